"""End to end against `docker compose up`, where a Docker engine is reachable.

This machine kind has the docker client but no engine, so here the test reports why it
did not run; the static checks of docker-compose.yml (test_compose.py) always run.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import requests

from conftest import SAMPLE
from harness import REPO, wait_until


def _engine_problem() -> str | None:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as e:  # noqa: BLE001 - any failure means no usable engine
        return f"no Docker engine reachable ({type(e).__name__}): the compose end-to-end " \
               "test needs one; docker-compose.yml is checked statically instead"
    if not shutil.which("docker"):
        return "the docker command is missing"
    return None


def test_compose_stack_loads_the_sample(tmp_path) -> None:  # noqa: ANN001
    problem = _engine_problem()
    if problem:
        pytest.skip(problem)
    project = f"chute-test-{uuid.uuid4().hex[:8]}"
    compose = ["docker", "compose", "-p", project, "-f", str(REPO / "docker-compose.yml")]
    (REPO / "data" / "inbox").mkdir(parents=True, exist_ok=True)
    name = f"compose-{project}.csv"
    try:
        subprocess.run([*compose, "up", "-d", "--build", "--wait"], check=True, timeout=900)
        (REPO / "data" / "inbox" / name).write_bytes(SAMPLE)

        def loaded() -> bool:
            items = requests.get("http://127.0.0.1:8080/files", params={"name": name},
                                 timeout=5).json()["items"]
            return bool(items) and items[0]["state"] == "loaded" and items[0]["rows_loaded"] == 15

        wait_until(loaded, 60, 0.5, what=f"{name} to load in the compose stack")
    finally:
        subprocess.run([*compose, "down", "-v"], timeout=300)
        for folder in ("inbox", "archive"):
            (REPO / "data" / folder / name).unlink(missing_ok=True)
