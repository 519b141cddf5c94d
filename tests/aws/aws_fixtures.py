"""The AWS tests' fixtures. Test modules load them with
`pytest_plugins = ["aws_fixtures"]`: a conftest.py in this folder would replace the
`conftest` module that other test folders import from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Environment
from lambda_world import deployed, make_bucket


@pytest.fixture
def lambda_env(tmp_path: Path) -> Iterator[Environment]:
    with deployed(tmp_path) as environment:
        yield environment


@pytest.fixture
def s3(lambda_env: Environment) -> Any:
    return make_bucket()
