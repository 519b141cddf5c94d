"""aws.config: secrets named in the environment, read from (mocked) SSM and Secrets
Manager, become the same validated Config the local services use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from aws.config import load_config
from chute.errors import ConfigError
from chute.postgres import db
from harness import Environment
from lambda_world import REGION, TOKEN, TOKEN_PARAMETER

pytest_plugins = ["aws_fixtures"]

# What generated passwords hold: characters that mean something in a URL.
PASSWORD = "p@ss/w:rd%?#&=+ é"


def rds_secret(**fields: Any) -> str:
    """A Secrets Manager secret as RDS writes it; returns its ARN."""
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.create_secret(Name="chute/rds", SecretString=json.dumps(fields))["ARN"]


def test_url_and_token_come_from_ssm(lambda_env: Environment) -> None:
    config = load_config()

    assert config.database_url == lambda_env.database_url
    assert config.api_token == TOKEN
    assert config.batch_size == 4


def test_rds_secret_makes_a_url_psycopg2_and_the_api_can_use(lambda_env: Environment,
                                                              tmp_path: Path) -> None:
    arn = rds_secret(engine="postgres", username="postgres", password=PASSWORD,
                     host="127.0.0.1", port=5432, dbname="postgres")
    env = {"CHUTE_DATABASE_SECRET": arn, "CHUTE_DATABASE_NAME": lambda_env.database}

    config = load_config(env)

    parts = urlsplit(config.database_url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 5432,
                                                        f"/{lambda_env.database}")
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == (
        "postgres", PASSWORD)
    db.ensure_database(config.database_url)  # the local server trusts: the URL is what counts
    conn = db.connect(config.database_url)
    try:
        assert conn.info.dbname == lambda_env.database and conn.info.user == "postgres"
        assert conn.info.password == PASSWORD
    finally:
        conn.close()


def test_managed_master_secret_takes_host_port_and_name_from_the_environment(
        lambda_env: Environment) -> None:
    arn = rds_secret(username="chute_owner", password=PASSWORD)  # what RDS manages itself
    env = {"CHUTE_DATABASE_SECRET": arn, "CHUTE_DATABASE_HOST": "db.example.internal",
           "CHUTE_DATABASE_PORT": "6432", "CHUTE_DATABASE_SSLMODE": "require"}

    config = load_config(env)

    assert config.database_url == (
        "postgresql://chute_owner:p%40ss%2Fw%3Ard%25%3F%23%26%3D%2B%20%C3%A9"
        "@db.example.internal:6432/chute?sslmode=require")
    assert config.database_name == "chute"


def test_a_secret_holding_a_url_is_used_as_it_is(lambda_env: Environment) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="chute/url",
                               SecretString=lambda_env.database_url + "\n")["ARN"]

    assert load_config({"CHUTE_DATABASE_SECRET": arn}).database_url == lambda_env.database_url


@pytest.mark.parametrize(("env", "message"), [
    ({}, "CHUTE_DATABASE_SECRET or CHUTE_DATABASE_URL_PARAMETER must name where the "
         "database URL is kept"),
    ({"CHUTE_DATABASE_URL_PARAMETER": "/chute/none"},
     "CHUTE_DATABASE_URL_PARAMETER: cannot read SSM parameter '/chute/none': ParameterNotFound"),
    ({"CHUTE_DATABASE_SECRET": "chute/none"},
     "CHUTE_DATABASE_SECRET: cannot read secret 'chute/none': ResourceNotFoundException"),
    ({"CHUTE_DATABASE_URL": "postgresql://h/db", "CHUTE_API_TOKEN_PARAMETER": "/chute/none"},
     "CHUTE_API_TOKEN_PARAMETER: cannot read SSM parameter '/chute/none': ParameterNotFound"),
], ids=["nothing", "missing-parameter", "missing-secret", "missing-token"])
def test_a_missing_secret_is_one_line_naming_the_variable(lambda_env: Environment,
                                                         env: dict[str, str],
                                                         message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(env)

    assert str(error.value) == message


def test_secret_values_never_appear_in_errors(lambda_env: Environment) -> None:
    arn = rds_secret(username="postgres", password=PASSWORD)  # no host anywhere
    with pytest.raises(ConfigError) as error:
        load_config({"CHUTE_DATABASE_SECRET": arn})

    assert str(error.value) == "CHUTE_DATABASE_HOST must be set: the secret names no host"
    assert TOKEN_PARAMETER not in str(error.value) and PASSWORD not in str(error.value)
