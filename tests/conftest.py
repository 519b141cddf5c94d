from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chute.datasets.declarations import load  # noqa: E402
from chute.postgres import db  # noqa: E402
from chute.rabbitmq.broker import Broker  # noqa: E402
from harness import AMQP, Environment, Services  # noqa: E402

SAMPLE = (Path(__file__).resolve().parent.parent / "data" / "sample.csv").read_bytes()


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    env = Environment(tmp_path)
    yield env
    env.cleanup()


@pytest.fixture
def services(environment: Environment, request: pytest.FixtureRequest) -> Iterator[Services]:
    services = Services(environment)
    yield services
    services.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(services.logs())


@pytest.fixture
def stack(services: Services) -> Services:
    """All four services running (one transformer, one loader)."""
    services.start_all()
    return services


@pytest.fixture
def conn(environment: Environment) -> Iterator[db.Connection]:
    """The test's own connection to its database, with the schema applied (people)."""
    db.ensure_database(environment.database_url)
    connection = db.connect(environment.database_url)
    db.apply_schema(connection, load(None), f"{environment.database}_reader")
    yield connection
    connection.close()


@pytest.fixture
def broker(environment: Environment) -> Iterator[Broker]:
    """A publisher on the test's namespace."""
    publisher = Broker(AMQP, environment.namespace)
    yield publisher
    publisher.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
