"""Schemathesis against the running API's own /openapi.json: every generated request,
valid and invalid, must get a documented status with a body matching the document, and
never a server error. Run with and without a token, over rows the pipeline loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from api.routes import FILES_CURSOR, PEOPLE_CURSOR, REJECTS_CURSOR, RowsRoute
from chute.datasets.declarations import load
from conftest import SAMPLE
from harness import REPO, Environment, Services, free_port, wait_until

# The example datasets: every column type and rule, so every kind of typed parameter of
# /datasets/NAME/rows is fuzzed.
DATASETS = REPO / "examples" / "chute.toml"
ROW_CURSORS = [route.cursor for route in RowsRoute.of_all(load(DATASETS))]

# Cursors are opaque: the document can only name their kind (format "people-cursor"
# etc.), so schemathesis is taught here to make valid ones. This module is also the
# `st` process's hooks module (SCHEMATHESIS_HOOKS), which is how the formats reach it.
for cursor in (PEOPLE_CURSOR, FILES_CURSOR, REJECTS_CURSOR, *ROW_CURSORS):
    positions = st.lists(st.integers(0, 2**63 - 1), min_size=cursor.size,
                         max_size=cursor.size)
    schemathesis.openapi.format(f"{cursor.listing}-cursor", positions.map(cursor.encode))

TOKEN = "schema-token"
ST = Path(sys.executable).parent / "st"
REJECTS = (b"fullname,age,location\nAda Lovelace,36,London\n ,3,Nowhere\nBob,200,Paris\n"
           b"Cy Young,x,Rome\n")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Environment, str]]:
    """The whole pipeline with two files loaded (one with rejects), plus a second API over
    the same database that requires TOKEN; yields the environment and that API's URL."""
    environment = Environment(tmp_path_factory.mktemp("schema"), CHUTE_DATASETS=str(DATASETS))
    services = Services(environment)
    examples = [f"{name}/{path.name}" for name in ("orders", "readings")
                for path in (REPO / "examples" / name).glob("*.csv")]
    try:
        services.start_all()
        environment.drop("sample.csv", SAMPLE)
        environment.drop("rejects.csv", REJECTS)
        for name in examples:
            environment.drop(name, (REPO / "examples" / name).read_bytes())
        assert environment.wait_final("sample.csv")["state"] == "loaded"
        assert environment.wait_final("rejects.csv")["rows_rejected"] == 3
        for name in examples:
            assert environment.wait_final(name)["state"] == "loaded"
        port = free_port()
        services.start("api", CHUTE_API_PORT=str(port), CHUTE_API_TOKEN=TOKEN)
        guarded = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(guarded + "/health"), 30, what="the guarded API")
        yield environment, guarded
    finally:
        services.stop_all()
        environment.cleanup()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


# Every check, with one exception: /ready answers 503, as documented, whenever the
# shared broker or database is slow. Only the fuzzing phase runs: the coverage phase
# (deterministic boundary cases) takes minutes on this machine, and test_api.py asserts
# those boundaries one by one.
CONFIG = """
[[operations]]
include-path = "/ready"
checks.not_a_server_error.expected-statuses = ["2xx", "4xx", "503"]
"""


def schemathesis(tmp: Path, url: str, token: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
    """`st run` with every check, bounded: a fixed seed and 30 examples per operation.

    The document is saved first: `st` sends --header with the test requests, not when
    it fetches the schema, and the guarded API wants the token for /openapi.json too.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    document = tmp / "openapi.json"
    document.write_bytes(requests.get(f"{url}/openapi.json", headers=headers, timeout=10).content)
    config = tmp / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [str(ST), "--config-file", str(config), "run", str(document), "--url", url,
               "--phases", "fuzzing", "--checks", "all", "--max-examples", "30",
               "--seed", "20251127", "--workers", "1", "--generation-database", "none",
               "--no-color", "--request-timeout", "20"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "SCHEMATHESIS_HOOKS": Path(__file__).stem,
           "PYTHONPATH": os.pathsep.join([str(here), str(here.parent), str(REPO)])}
    # cwd: hypothesis keeps a cache folder in the working directory; not in the repo.
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp)


def test_schemathesis_finds_nothing_without_a_token(loaded: tuple[Environment, str],
                                                    tmp_path: Path) -> None:
    environment, _ = loaded
    result = schemathesis(tmp_path, environment.api)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-6000:]


def test_schemathesis_finds_nothing_with_the_token(loaded: tuple[Environment, str],
                                                  tmp_path: Path) -> None:
    _, guarded = loaded
    result = schemathesis(tmp_path, guarded, TOKEN)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-6000:]
