"""Compose, whichever is installed: `docker compose` (v2) or `docker-compose` (v1, the one
Debian packages), and a compose file as compose renders it, for the tests to read."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """A command in the repository, with `env` added to (or, empty, removed from) ours."""
    environ = {k: v for k, v in (os.environ | env).items() if v != ""}
    return subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, text=True,
                          env=environ)


@cache
def compose_command() -> tuple[str, ...]:
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run `make install`")


def rendered(file: Path, **env: str) -> dict[str, Any]:
    """The file as compose understands it (anchors merged, paths resolved), as JSON."""
    command = (*compose_command(), "-f", str(file), "config")
    if compose_command() == ("docker", "compose"):
        result = run(*command, "--format", "json", **env)
        assert result.returncode == 0, f"compose config failed:\n{result.stderr}"
        return json.loads(result.stdout)
    # docker-compose 1.x prints only YAML. It is a Python script whose interpreter has
    # PyYAML (a dependency of compose 1.x), so that interpreter converts it to JSON.
    result = run(*command, **env)
    assert result.returncode == 0, f"compose config failed:\n{result.stderr}"
    shebang = Path(shutil.which("docker-compose") or "").read_bytes().split(b"\n", 1)[0]
    assert shebang.startswith(b"#!"), "docker-compose 1.x is not a Python script here"
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    converted = run(*shlex.split(shebang[2:].decode()), "-c", to_json, stdin=result.stdout)
    assert converted.returncode == 0, converted.stderr
    return json.loads(converted.stdout)
