"""The `chute` command reads only what each command needs (chute.commands.cli.Session)."""

from __future__ import annotations

import bz2
import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from chute.datasets.infer import infer

REPO = Path(__file__).resolve().parents[3]

_STATUS_IMPORTS = """
import sys
from chute.commands import cli
try:
    cli.main(["--api", "http://127.0.0.1:9", "status"], standalone_mode=False)
except SystemExit as e:
    print("exit", e.code)
print(sorted(m for m in ("pyarrow", "numpy", "psycopg2", "pika") if m in sys.modules))
"""


def test_status_is_an_http_client_that_imports_neither_pyarrow_nor_the_adapters(
        tmp_path: Path) -> None:
    (tmp_path / "chute.toml").write_text("[datasets.x]\nmatch = [\n")  # not even read
    run = subprocess.run([sys.executable, "-c", _STATUS_IMPORTS], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert run.stdout.splitlines() == ["exit 2", "[]"], run.stdout + run.stderr
    assert "cannot reach the chute API at http://127.0.0.1:9" in run.stderr


def test_infer_works_beside_an_unfinished_datasets_file(tmp_path: Path) -> None:
    """`chute infer FILE > chute.toml` is run where chute.toml is being written: a broken
    one there must not stop it, as the configuration is not infer's to read."""
    (tmp_path / "chute.toml").write_text("[datasets.x]\nmatch = [\n")
    (tmp_path / "sales.csv").write_text("id,region\n1,north\n2,south\n")
    run = subprocess.run([sys.executable, "-m", "chute.commands.cli", "infer", "sales.csv"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert "[datasets.sales]" in run.stdout and 'region = { type = "text"' in run.stdout


def test_a_command_that_needs_the_configuration_still_says_what_is_wrong(
        tmp_path: Path) -> None:
    (tmp_path / "chute.toml").write_text("[datasets.x]\nmatch = [\n")
    run = subprocess.run([sys.executable, "-m", "chute.commands.cli", "datasets"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert run.returncode == 2
    assert run.stderr.startswith("chute: configuration error: "), run.stderr


def test_infer_reads_a_compressed_file_as_its_text(tmp_path: Path) -> None:
    text = b"id;region;when\n1;north;2024-06-01\n2;south;2024-06-02\n"
    (tmp_path / "sales-2024.csv").write_bytes(text)
    (tmp_path / "sales-2024.csv.gz").write_bytes(gzip.compress(text))
    (tmp_path / "cut-2024.csv.bz2").write_bytes(bz2.compress(text * 100)[:-5])
    plain = infer(tmp_path / "sales-2024.csv")
    assert infer(tmp_path / "sales-2024.csv.gz") == plain.replace(
        "from sales-2024.csv", "from sales-2024.csv.gz")
    assert "[datasets.sales]" in plain and 'delimiter = ";"' in plain
    cut = tmp_path / "cut-2024.csv.bz2"
    with pytest.raises(ValueError) as refused:
        infer(cut)
    assert str(refused.value) == (f"{cut}: bzip2 data ends early after "
                                  f"{cut.stat().st_size:,} bytes")
