"""serverless.yml, checked without an AWS account: the Serverless Framework (v3, which
needs no login) compiles it to CloudFormation offline, cfn-lint checks the template, and
the tests read what it would deploy: the functions, the triggers, the failure path, the
permissions, and an environment that names secrets instead of holding them."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from aws.config import load_config
from harness import REPO
from lambda_world import REGION, TOKEN

pytest_plugins = ["aws_fixtures"]

SERVERLESS_VERSION = "3.40.0"
STAGE = "ci"
BUCKET = "chute-ci-data"
# cfn-lint's only remark is about serverless's own output (a DependsOn it adds beside a
# Ref that already orders the two resources): harmless, and not ours to change.
IGNORED_CHECKS = "W3005"


def serverless_command() -> list[str]:
    """The pinned Serverless Framework: CHUTE_SERVERLESS if set, else installed once from
    the npm registry into the user's cache (the Makefile can pre-install it there)."""
    if given := os.environ.get("CHUTE_SERVERLESS"):
        return [given]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    prefix = home / "chute" / f"serverless-{SERVERLESS_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "serverless"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, "these tests need Node.js and npm (apt-get install nodejs npm)"
        subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                        "--no-save", f"serverless@{SERVERLESS_VERSION}"],
                       check=True, capture_output=True, timeout=900)
    return [str(binary)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`serverless package` on a copy of the service, with a stand-in for the build
    artifact; no AWS credentials, so nothing can reach an account."""
    service = tmp_path_factory.mktemp("serverless")
    shutil.copy(REPO / "serverless.yml", service / "serverless.yml")
    (service / "build").mkdir()
    with zipfile.ZipFile(service / "build" / "chute-lambda.zip", "w") as artifact:
        artifact.writestr("aws/__init__.py", "")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env |= {"HOME": str(service / "home"), "SLS_TELEMETRY_DISABLED": "1",
            "SLS_NOTIFICATIONS_MODE": "off", "SLS_DEPRECATION_DISABLE": "*"}
    done = subprocess.run(
        [*serverless_command(), "package", "--stage", STAGE, "--region", REGION,
         f"--param=bucket={BUCKET}"],
        cwd=service, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    path = service / ".serverless" / "cloudformation-template-update-stack.json"
    yield json.loads(path.read_text())


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template["Resources"].items()
            if r["Type"] == kind}


def function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (found,) = [f for f in resources(template, "AWS::Lambda::Function").values()
                if f["Handler"] == handler]
    return found


def test_template_passes_cfn_lint(template: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    lint = Path(sys.executable).with_name("cfn-lint")

    done = subprocess.run([str(lint), "--ignore-checks", IGNORED_CHECKS, "--", str(path)],
                          capture_output=True, text=True, timeout=300)

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_every_handler_is_a_function_of_the_handlers_module(template: dict[str, Any]) -> None:
    handlers = sorted(f["Handler"] for f in resources(template,
                                                      "AWS::Lambda::Function").values())

    assert handlers == ["aws.handlers.on_failed_event", "aws.handlers.on_http_request",
                        "aws.handlers.on_s3_event"]
    for handler in handlers:
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
    assert {f["Runtime"] for f in resources(template, "AWS::Lambda::Function").values()} == {
        f"python{sys.version_info.major}.{sys.version_info.minor}"}


def test_objects_created_under_inbox_trigger_the_ingest_function(
        template: dict[str, Any]) -> None:
    (bucket,) = [b for b in resources(template, "AWS::S3::Bucket").values()
                 if b.get("BucketName") == BUCKET]
    (trigger,) = bucket["NotificationConfiguration"]["LambdaConfigurations"]

    assert trigger["Event"] == "s3:ObjectCreated:*"
    assert trigger["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "inbox/"}]}}
    assert trigger["Function"] == {"Fn::GetAtt": ["IngestLambdaFunction", "Arn"]}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert function(template, "aws.handlers.on_s3_event")["Timeout"] == 900


def test_failed_events_go_to_a_queue_that_marks_their_files_failed(
        template: dict[str, Any]) -> None:
    (invoke,) = resources(template, "AWS::Lambda::EventInvokeConfig").values()
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    queues = resources(template, "AWS::SQS::Queue")
    failures = function(template, "aws.handlers.on_failed_event")

    assert invoke["FunctionName"] == {"Ref": "IngestLambdaFunction"}
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["GivenUpEvents", "Arn"]}}}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["GivenUpEvents", "Arn"]}
    assert mapping["FunctionName"] == {"Fn::GetAtt": ["FailuresLambdaFunction", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queues["GivenUpEvents"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["GivenUpEventsUnhandled", "Arn"]}
    assert queues["GivenUpEvents"]["VisibilityTimeout"] >= 6 * failures["Timeout"]


def test_every_http_request_goes_to_the_api_function(template: dict[str, Any]) -> None:
    (route,) = resources(template, "AWS::ApiGatewayV2::Route").values()
    (integration,) = resources(template, "AWS::ApiGatewayV2::Integration").values()

    assert route["RouteKey"] == "$default"  # any method, any path: aiohttp routes
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["ApiLambdaFunction", "Arn"]}
    api = function(template, "aws.handlers.on_http_request")
    assert api["Timeout"] < integration["TimeoutInMillis"] / 1000


def test_the_role_reads_inbox_writes_quarantine_and_reads_only_its_secrets(
        template: dict[str, Any]) -> None:
    (role,) = resources(template, "AWS::IAM::Role").values()
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    grants = {json.dumps(s["Resource"], sort_keys=True): sorted(s["Action"])
              for s in statements if not str(s["Action"]).startswith("['logs:")}

    partition = "arn:${AWS::Partition}"
    assert grants[json.dumps({"Fn::Sub": f"{partition}:s3:::{BUCKET}/inbox/*"})] == [
        "s3:GetObject", "s3:GetObjectVersion"]
    assert grants[json.dumps({"Fn::Sub": f"{partition}:s3:::{BUCKET}/quarantine/*"})] == [
        "s3:PutObject"]
    assert grants[json.dumps({"Ref": "DatabaseSecretArn"})] == [
        "secretsmanager:GetSecretValue"]
    assert grants[json.dumps({"Fn::Sub": f"{partition}:ssm:${{AWS::Region}}:"
                                         f"${{AWS::AccountId}}:parameter/chute/{STAGE}/"
                                         "api-token"})] == ["ssm:GetParameter"]
    assert not any("*" == s["Resource"] for s in statements)


def test_environment_names_secrets_and_holds_none(template: dict[str, Any]) -> None:
    variables = [f["Environment"]["Variables"]
                 for f in resources(template, "AWS::Lambda::Function").values()]
    text = json.dumps(variables)

    assert all(v == variables[0] for v in variables)
    assert not {"CHUTE_DATABASE_URL", "CHUTE_API_TOKEN"} & set(variables[0])
    assert "postgres" not in text and "password" not in text.lower()
    parameters = template["Parameters"]
    for name in ("DatabaseSecretArn", "DatabaseHost"):
        assert parameters[name] == {"Type": "AWS::SSM::Parameter::Value<String>",
                                    "Default": f"/chute/{STAGE}/" + {
                                        "DatabaseSecretArn": "database-secret-arn",
                                        "DatabaseHost": "database-host"}[name]}


def test_deployed_environment_resolves_to_a_valid_config(lambda_env: Any,
                                                         template: dict[str, Any]) -> None:
    """What CloudFormation and then the function at cold start would do with the
    template's environment, against (mocked) SSM and Secrets Manager."""
    ssm = boto3.client("ssm", region_name=REGION)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name=f"chute/{STAGE}/rds", SecretString=json.dumps(
        {"username": "chute_owner", "password": "generated/p@ss"}))["ARN"]
    ssm.put_parameter(Name=f"/chute/{STAGE}/database-secret-arn", Value=arn, Type="String")
    ssm.put_parameter(Name=f"/chute/{STAGE}/database-host", Type="String",
                      Value="chute.cluster-abc.eu-west-1.rds.amazonaws.com")
    ssm.put_parameter(Name=f"/chute/{STAGE}/api-token", Value=TOKEN, Type="SecureString")
    variables = function(template, "aws.handlers.on_s3_event")["Environment"]["Variables"]

    def resolve(value: Any) -> str:  # CloudFormation: an SSM-typed parameter's value
        if isinstance(value, dict):
            name = template["Parameters"][value["Ref"]]["Default"]
            return ssm.get_parameter(Name=name)["Parameter"]["Value"]
        return value

    config = load_config({name: resolve(value) for name, value in variables.items()})

    assert config.database_url == ("postgresql://chute_owner:generated%2Fp%40ss@chute.cluster"
                                   "-abc.eu-west-1.rds.amazonaws.com:5432/chute?sslmode=require")
    assert (config.api_token, config.table, config.batch_size) == (TOKEN, "people", 10000)
