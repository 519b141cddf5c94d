"""API Gateway (HTTP API, payload 2.0) -> the api handler: for every request, the same
status, headers that matter and body, byte for byte, as the aiohttp API itself gives,
run as `python -m api` against the same database."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from api.app import create_app
from aws import handlers
from aws.gateway import ApiGateway
from aws.handlers import on_http_request, on_s3_event
from chute.runtime.config import Config
from conftest import SAMPLE
from harness import Environment, Services, free_port, wait_until
from lambda_world import TOKEN, FakeContext, deployed, make_bucket, put

HOST = "abc123xyz.execute-api.eu-west-1.amazonaws.com"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIXED = (b"fullname,age,location\nAda Lovelace,36,London\nBob,abc,Paris\n,40,Rome\n"
         b"Cy Young,50\n\nDee Dee,30.0, Oslo \n")
MISSING = "00000000-0000-4000-8000-000000000000"

# (method, target, headers); {sample} and {mixed} stand for those files' ids.
REQUESTS = [
    ("GET", "/health", {}),
    ("GET", "/read/first-chunk", AUTH),
    ("GET", "/read/first-chunk?num_records=5&db_name=x&user=y&password=z&table_name=people",
     AUTH),
    ("GET", "/read/first-chunk?num_records=abc", AUTH),
    ("GET", "/read/first-chunk?num_records=0", AUTH),
    ("GET", "/read/first-chunk?table_name=secrets", AUTH),
    ("GET", "/people?limit=3", AUTH),
    ("GET", "/people?location=New%20York", AUTH),
    ("GET", "/people?min_age=30&max_age=31&last_name=Lee", AUTH),
    ("GET", "/people?limit=abc", AUTH),
    ("GET", "/files", AUTH),
    ("GET", "/files?state=quarantined", AUTH),
    ("GET", "/files?name=sample.csv", AUTH),
    ("GET", "/files?state=bogus", AUTH),
    ("GET", "/files/{sample}", AUTH),
    ("GET", "/files/{mixed}/rejects", AUTH),
    ("GET", "/files/{mixed}/rejects?limit=1", AUTH),
    ("GET", "/files/not-a-uuid", AUTH),
    ("GET", f"/files/{MISSING}", AUTH),
    ("GET", f"/files/{MISSING}/rejects", AUTH),
    ("GET", "/no/such/route", AUTH),
    ("POST", "/files", AUTH),
    ("HEAD", "/files", AUTH),
    ("GET", "/files", {}),
    ("GET", "/files", {"Authorization": "Bearer wrong"}),
    ("GET", "/openapi.json", AUTH),
    ("GET", "/docs", AUTH),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One database for the module, filled through S3 (a loaded file, one with rejects,
    a quarantined one), read by the api handler and by the aiohttp API as a process with
    the same token. Requests only read, so the tests share it."""
    with deployed(tmp_path_factory.mktemp("aws-api")) as environment:
        s3 = make_bucket()
        ids = {}
        for name, key, body in (("sample", "inbox/sample.csv", SAMPLE),
                                ("mixed", "inbox/mixed.csv", MIXED),
                                ("bad", "inbox/bad.csv", b"name,age\nAda,36\n")):
            answer = on_s3_event(put(s3, key, body), FakeContext())
            ids[name] = answer["files"][0]["file_id"]
        services = Services(environment)
        services.start("api", CHUTE_API_TOKEN=TOKEN)
        try:
            wait_until(lambda: _answers(environment.api), 30, what="the API to answer /health")
            yield World(environment, environment.api, ids)
        finally:
            services.stop_all()


@dataclass(frozen=True)
class World:
    environment: Environment
    reference: str  # the aiohttp API's base URL
    file_ids: dict[str, str]


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/health", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def gateway_event(method: str, target: str, headers: dict[str, str],
                  body: bytes | None = None) -> dict[str, Any]:
    """An HTTP API payload 2.0 event as API Gateway sends it for the $default route."""
    path, _, query = target.partition("?")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "*/*", "content-length": str(len(body or b"")), "host": HOST,
                    "user-agent": "curl/8.5.0", "x-amzn-trace-id": "Root=1-5f84c7a9-0e5b1e",
                    "x-forwarded-for": "203.0.113.10", "x-forwarded-port": "443",
                    "x-forwarded-proto": "https"}
                   | {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123xyz", "domainName": HOST,
            "domainPrefix": "abc123xyz",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "curl/8.5.0"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000", "timeEpoch": 1735689600000,
        },
        "isBase64Encoded": body is not None,
    }
    if query:  # API Gateway joins repeated parameters with commas
        parameters: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
        event["queryStringParameters"] = parameters
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
    return event


def ask_both(reference: str, method: str, target: str,
             headers: dict[str, str]) -> tuple[requests.Response, dict[str, Any]]:
    direct = requests.request(method, reference + target, timeout=10,
                              headers={"Host": HOST, "User-Agent": "curl/8.5.0", **headers})
    return direct, on_http_request(gateway_event(method, target, headers), FakeContext())


def body_of(answer: dict[str, Any]) -> bytes:
    return (base64.b64decode(answer["body"]) if answer["isBase64Encoded"]
            else answer["body"].encode())


def assert_same(direct: requests.Response, answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == direct.status_code
    for name in ("content-type", "allow", "www-authenticate"):
        assert answer["headers"].get(name) == direct.headers.get(name), name
    assert body_of(answer) == direct.content


@pytest.mark.parametrize(("method", "target", "headers"), REQUESTS,
                         ids=[f"{m} {t}" + (" no-token" if h is not AUTH else "")
                              for m, t, h in REQUESTS])
def test_request_answers_as_the_aiohttp_api(world: World, method: str, target: str,
                                            headers: dict[str, str]) -> None:
    target = target.format(**world.file_ids)

    direct, answer = ask_both(world.reference, method, target, headers)

    assert_same(direct, answer)
    assert set(answer) <= {"statusCode", "headers", "body", "isBase64Encoded", "cookies"}


def test_pages_follow_the_same_cursors(world: World) -> None:
    target = "/people?limit=4"
    pages = 0
    while target:
        direct, answer = ask_both(world.reference, "GET", target, AUTH)
        assert_same(direct, answer)
        cursor = direct.json()["next_cursor"]
        target = f"/people?limit=4&cursor={cursor}" if cursor else ""
        pages += 1
    assert pages == 5  # 15 + 2 rows, 4 a page


def test_every_route_of_the_app_answers_as_the_aiohttp_api(world: World) -> None:
    """Routes are taken from the app itself, so a route added later is covered too."""
    app = create_app(Config.from_env(world.environment.env))
    mixed = world.file_ids["mixed"]
    paths = sorted({resource.canonical.replace("{file_id}", mixed)
                    for resource in app.router.resources()})
    assert {f"/files/{mixed}/rejects", "/health"} <= set(paths)

    for path in paths:
        direct, answer = ask_both(world.reference, "GET", path, AUTH)
        if path == "/ready":  # see test_ready_checks_the_database_and_no_broker
            continue
        if path == "/metrics":  # counts differ between two processes; the families do not
            assert answer["statusCode"] == direct.status_code == 200
            assert answer["headers"]["content-type"] == direct.headers["content-type"]
            assert families(body_of(answer).decode()) == families(direct.text)
        else:
            assert_same(direct, answer)


def test_ready_checks_the_database_and_no_broker(world: World) -> None:
    """On Lambda there is no broker: /ready answers for the database alone, even with the
    configured broker unreachable, and still 503 when the database does not answer."""
    direct, answer = ask_both(world.reference, "GET", "/ready", {})
    assert direct.json() == {"status": "ready", "database": "ok", "broker": "ok"}
    assert answer["statusCode"] == 200
    assert json.loads(body_of(answer)) == {"status": "ready", "database": "ok",
                                           "broker": "not used"}

    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    for env, status in (({"CHUTE_AMQP_URL": nowhere}, 200),
                        ({"CHUTE_DATABASE_URL":
                          f"postgresql://postgres@127.0.0.1:{free_port()}/none"}, 503)):
        gateway = ApiGateway(Config.from_env(world.environment.env | env))
        try:
            assert gateway.handle(gateway_event("GET", "/ready", {}))["statusCode"] == status
        finally:
            gateway.close()


def families(metrics: str) -> set[str]:
    return {line for line in metrics.splitlines() if line.startswith("# HELP")}


def test_request_body_reaches_the_app_decoded(world: World) -> None:
    direct = requests.post(world.reference + "/files", data=b"\x00\xff binary", timeout=10,
                           headers={"Host": HOST, **AUTH})

    answer = on_http_request(gateway_event("POST", "/files", AUTH, body=b"\x00\xff binary"),
                             FakeContext())

    assert_same(direct, answer)
    assert answer["statusCode"] == 405


def test_many_requests_in_one_container_get_their_own_answers(world: World) -> None:
    """Many requests in one container, each answered on its own connection."""
    answers = [on_http_request(gateway_event("GET", f"/files/{uuid.uuid4()}", AUTH),
                               FakeContext()) for _ in range(30)]

    assert {a["statusCode"] for a in answers} == {404}
    assert len({a["body"] for a in answers}) == 30


def test_an_in_process_server_that_stopped_answers_503_then_comes_back(world: World) -> None:
    on_http_request(gateway_event("GET", "/health", {}), FakeContext())
    assert handlers._gateway is not None
    handlers._gateway.loop.run_until_complete(handlers._gateway.runner.cleanup())

    broken = on_http_request(gateway_event("GET", "/health", {}), FakeContext())
    again = on_http_request(gateway_event("GET", "/health", {}), FakeContext())

    assert (broken["statusCode"], broken["headers"]) == (503, {
        "content-type": "application/json"})
    assert json.loads(broken["body"]) == {"error": {
        "code": "unavailable", "message": "the API is restarting; retry soon"}}
    assert (again["statusCode"], json.loads(again["body"])) == (200, {"status": "ok"})


def test_a_containers_api_is_closed_when_its_process_ends(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cold start that answered a request used to log "Unclosed client session" as
    the runtime ended the process: nothing closed the in-process client and server."""
    if handlers._gateway is not None:
        handlers._gateway.close()
        handlers._gateway = None
    at_exit: list[Any] = []
    monkeypatch.setattr(handlers.atexit, "register", at_exit.append)

    assert on_http_request(gateway_event("GET", "/health", {}), FakeContext())[
        "statusCode"] == 200
    gateway = handlers._gateway
    assert gateway is not None and at_exit == [gateway.close]
    assert gateway.session is not None and not gateway.session.closed
    at_exit[0]()  # what the interpreter does at its exit
    assert gateway.session.closed and gateway.loop.is_closed()
    handlers._gateway = None
