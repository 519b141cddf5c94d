"""Configuration in Lambda: the environment, plus secrets fetched by name at cold start.

serverless.yml gives the functions the *names* of their secrets, never the values: a
value resolved at deploy time would sit in the function's configuration, readable by
anyone who may read that. The database URL comes from the first of:

  CHUTE_DATABASE_URL_PARAMETER  an SSM SecureString holding the whole URL
  CHUTE_DATABASE_SECRET         a Secrets Manager secret: RDS's JSON {username, password,
                                host, port, dbname} (an RDS-managed master secret holds
                                only the first two) or a URL. CHUTE_DATABASE_HOST, _PORT
                                and _NAME, when set, override its host, port and dbname;
                                CHUTE_DATABASE_SSLMODE is added to the URL.
  CHUTE_DATABASE_URL            a plain URL, for running the handlers outside AWS

CHUTE_API_TOKEN_PARAMETER names an SSM SecureString holding the API's bearer token. The
result goes through chute.runtime.config.Config.from_env, validated as for the local services.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import botocore.config
import botocore.exceptions

from chute.errors import ConfigError
from chute.runtime.config import Config

# A function in a VPC without a route to SSM or Secrets Manager would otherwise hang
# until Lambda's timeout: fail within seconds, with an error that names the variable.
_CLIENT_CONFIG = botocore.config.Config(connect_timeout=5, read_timeout=10,
                                        retries={"max_attempts": 3, "mode": "standard"})
_AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def load_config(env: Mapping[str, str] | None = None,
                session: boto3.session.Session | None = None) -> Config:
    """Resolve the secrets the environment names, then build and validate the Config."""
    env = dict(os.environ if env is None else env)
    session = session or boto3.session.Session()
    resolved = dict(env)
    if name := env.get("CHUTE_DATABASE_URL_PARAMETER"):
        resolved["CHUTE_DATABASE_URL"] = _parameter(session, "CHUTE_DATABASE_URL_PARAMETER",
                                                    name)
    elif secret_id := env.get("CHUTE_DATABASE_SECRET"):
        resolved["CHUTE_DATABASE_URL"] = database_url(_secret(session, secret_id), env)
    elif not env.get("CHUTE_DATABASE_URL"):
        raise ConfigError("CHUTE_DATABASE_SECRET or CHUTE_DATABASE_URL_PARAMETER must name "
                          "where the database URL is kept")
    if name := env.get("CHUTE_API_TOKEN_PARAMETER"):
        resolved["CHUTE_API_TOKEN"] = _parameter(session, "CHUTE_API_TOKEN_PARAMETER", name)
    return Config.from_env(resolved)


def database_url(secret: str, env: Mapping[str, str]) -> str:
    """A PostgreSQL URL from a secret's text: RDS's JSON document, or a URL as it is."""
    try:
        fields: Any = json.loads(secret)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        return secret.strip()
    try:
        user, password = str(fields["username"]), str(fields["password"])
    except KeyError as e:
        raise ConfigError(f"CHUTE_DATABASE_SECRET: the secret has no {e.args[0]}") from None
    host = env.get("CHUTE_DATABASE_HOST") or fields.get("host")
    if not host:
        raise ConfigError("CHUTE_DATABASE_HOST must be set: the secret names no host")
    port = env.get("CHUTE_DATABASE_PORT") or fields.get("port") or 5432
    name = env.get("CHUTE_DATABASE_NAME") or fields.get("dbname") or "chute"
    sslmode = env.get("CHUTE_DATABASE_SSLMODE")
    # Quoted: generated passwords hold '@', '/', ':' and '%', which would break the URL.
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{name}"
    return url + ("?" + urlencode({"sslmode": sslmode}) if sslmode else "")


def _parameter(session: boto3.session.Session, variable: str, name: str) -> str:
    try:
        answer = session.client("ssm", config=_CLIENT_CONFIG).get_parameter(
            Name=name, WithDecryption=True)
    except _AWS_ERRORS as e:
        raise ConfigError(f"{variable}: cannot read SSM parameter {name!r}: {_reason(e)}"
                          ) from None
    return str(answer["Parameter"]["Value"])


def _secret(session: boto3.session.Session, secret_id: str) -> str:
    try:
        answer = session.client("secretsmanager", config=_CLIENT_CONFIG).get_secret_value(
            SecretId=secret_id)
    except _AWS_ERRORS as e:
        raise ConfigError(f"CHUTE_DATABASE_SECRET: cannot read secret {secret_id!r}: "
                          f"{_reason(e)}") from None
    if "SecretString" not in answer:
        raise ConfigError("CHUTE_DATABASE_SECRET: the secret holds binary, not text")
    return str(answer["SecretString"])


def _reason(error: Exception) -> str:
    """The AWS error code, not the message: messages may quote what was asked for."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", "error"))
    return type(error).__name__
