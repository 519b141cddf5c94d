from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Environment, Services  # noqa: E402

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
