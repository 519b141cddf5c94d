"""Operating chute: the `chute` command and every worker's Prometheus metrics."""

from __future__ import annotations

import re
import subprocess
import sys

import pyarrow as pa
import requests

from conftest import SAMPLE
from harness import REPO, Environment, Services, free_port, wait_until

BAD_ROWS = b"fullname,age,location\nAda Lovelace,36,London\n,40,Paris\nAlan Turing,abc,Wilmslow\n"


def chute(environment: Environment, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chute.commands.cli", *args], cwd=REPO, env=environment.env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_ingest_follow_against_make_up_shows_progress_then_a_summary(
        environment: Environment, services: Services) -> None:
    services.start("chute.commands.stack")  # what `make up` runs after installing
    services.wait_for_api()

    result = chute(environment, "ingest", str(REPO / "data" / "sample.csv"), "--follow")

    assert result.returncode == 0, result.stderr
    assert "15/15 rows" in result.stdout  # the progress bar, finished
    assert re.search(r"sample\.csv: loaded, 15 rows loaded, 0 rejected, in \d+\.\d\d s",
                     result.stdout)
    assert (environment.data_dir / "archive" / "sample.csv").read_bytes() == SAMPLE
    assert not [p for p in environment.inbox.iterdir()]  # no partial copy left behind

    status = chute(environment, "status")
    assert status.returncode == 0
    assert re.search(r"sample\.csv\s.*loaded\s.*15\s.*0\s.*15", status.stdout)


def test_rejects_lists_the_rows_a_file_did_not_load(environment: Environment,
                                                     stack: Services, tmp_path) -> None:  # noqa: ANN001
    source = tmp_path / "bad rows.csv"
    source.write_bytes(BAD_ROWS)
    ingest = chute(environment, "ingest", str(source), "--follow")
    assert ingest.returncode == 0, ingest.stderr
    assert "bad rows.csv: loaded, 1 rows loaded, 2 rejected" in ingest.stdout
    file_id = environment.file_state("bad rows.csv")["file_id"]

    result = chute(environment, "rejects", file_id)

    assert result.returncode == 0
    assert re.search(r"3\s.*fullname: is empty\s.*,40,Paris", result.stdout)
    assert re.search(r'4\s.*age: "abc" is not a whole number\s.*Alan Turing,abc,Wilmslow',
                     result.stdout)


def test_ingest_sends_a_compressed_file_and_rejects_name_its_decompressed_lines(
        environment: Environment, stack: Services, tmp_path) -> None:  # noqa: ANN001
    source = tmp_path / "bad rows.csv.zst"
    out = pa.BufferOutputStream()
    with pa.CompressedOutputStream(out, "zstd") as stream:
        stream.write(BAD_ROWS)
    source.write_bytes(out.getvalue().to_pybytes())
    ingest = chute(environment, "ingest", str(source), "--follow")
    assert ingest.returncode == 0, ingest.stderr
    assert "bad rows.csv.zst: loaded, 1 rows loaded, 2 rejected" in ingest.stdout
    file_id = environment.file_state("bad rows.csv.zst")["file_id"]
    result = chute(environment, "rejects", file_id)
    assert re.search(r"3\s.*fullname: is empty\s.*,40,Paris", result.stdout)


def test_retry_sends_a_quarantined_file_round_again(environment: Environment,
                                                     stack: Services) -> None:
    environment.drop("headless.csv", b"name,years\nAda,36\n")
    first = environment.wait_final("headless.csv")
    assert first["state"] == "quarantined"
    assert (environment.data_dir / "quarantine" / "headless.csv").exists()

    result = chute(environment, "retry", first["file_id"])

    assert result.returncode == 0, result.stderr
    assert f"headless.csv: sent back through the pipeline ({first['file_id']})" in result.stdout
    # The same arrival goes round again and, unchanged, is quarantined again.
    again = wait_until(
        lambda: (f := environment.get(f"/files/{first['file_id']}").json())["state"]
        == "quarantined" and f["finished_at"] != first["finished_at"] and f,
        what="the retried file to be quarantined again")
    assert again["error"] == first["error"]
    assert (environment.data_dir / "quarantine" / "headless.csv").exists()
    assert environment.sql("SELECT count(*) FROM chute.files") == [(1,)]


def test_retry_refuses_a_loaded_file_and_unknown_files(environment: Environment,
                                                       stack: Services) -> None:
    environment.drop("sample.csv", SAMPLE)
    loaded = environment.wait_final("sample.csv")

    refused = chute(environment, "retry", loaded["file_id"])
    unknown = chute(environment, "rejects", "00000000-0000-0000-0000-000000000000")

    assert refused.returncode == 1
    assert "sample.csv is loaded: only quarantined or failed files can be retried" \
        in refused.stderr
    assert unknown.returncode == 1
    assert "no file 00000000-0000-0000-0000-000000000000" in unknown.stderr


def test_commands_say_clearly_when_the_api_is_down(environment: Environment) -> None:
    result = chute(environment, "status")

    assert result.returncode == 2
    assert f"cannot reach the chute API at {environment.api}" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_worker_exposes_the_counts_of_a_real_run(environment: Environment,
                                                       services: Services) -> None:
    ports = {name: free_port() for name in ("watcher", "transformer", "loader")}
    services.start("api")
    for name, port in ports.items():
        services.start(name, CHUTE_METRICS_PORT=str(port))
    services.wait_for_api()
    environment.drop("sample.csv", SAMPLE)
    environment.drop("bad.csv", BAD_ROWS)
    environment.drop("headless.csv", b"name,years\nAda,36\n")
    for name in ("sample.csv", "bad.csv", "headless.csv"):
        wait_until(lambda n=name: _final(environment, n), 60, what=f"{name} to finish")

    def scrape(name: str) -> str:
        return requests.get(f"http://127.0.0.1:{ports[name]}/metrics", timeout=5).text

    watcher, transformer = scrape("watcher"), scrape("transformer")
    loader = wait_until(lambda: 'chute_files_total{state="loaded"} 2.0' in (s := scrape(
        "loader")) and s, 10, what="the loader's metrics")
    assert 'chute_files_received_total{dataset="people"} 3.0' in watcher
    assert 'chute_files_total{state="quarantined"} 1.0' in transformer
    assert 'chute_batches_total{outcome="published"} 2.0' in transformer
    assert 'chute_rows_total{dataset="people",outcome="loaded"} 16.0' in loader
    assert 'chute_rows_total{dataset="people",outcome="rejected"} 2.0' in loader
    assert 'chute_batches_total{outcome="loaded"} 2.0' in loader
    assert "chute_batch_seconds_count 2.0" in loader
    for text in (watcher, transformer, loader):
        assert 'chute_connected{peer="broker"} 1.0' in text
        assert 'chute_connected{peer="database"} 1.0' in text

    api = requests.get(environment.api + "/metrics", timeout=5)
    assert api.status_code == 200
    assert "# TYPE" in api.text


def _final(environment: Environment, name: str) -> bool:
    rows = environment.sql("SELECT state FROM chute.files WHERE name = %s", (name,))
    return bool(rows) and rows[0][0] in ("loaded", "quarantined")


