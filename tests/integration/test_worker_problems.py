"""A worker that cannot work is never silent: it stops with one line, and the API's
/ready and status page say which worker and why, until one of its kind starts fine.

The tests run as root here, which writes anywhere, so the data folder is made unusable
the way nothing can write through: `work` is a plain file where a folder must be.
"""

from __future__ import annotations

import shutil
import subprocess

from conftest import SAMPLE
from harness import Environment, Services, wait_until


def _output(services: Services, index: int) -> str:
    logs = sorted(services.environment.logs.iterdir())
    return logs[index].read_text(errors="replace")


def _exits(process: subprocess.Popen[bytes]) -> int:
    return wait_until(lambda: process.poll() is not None, 60, 0.1,
                      what="the worker to exit") and process.returncode


def _not_ready(environment: Environment) -> str:
    answer = environment.get("/ready")
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "not_ready"
    return error["message"]


def test_workers_that_cannot_write_the_data_folder_stop_with_one_line_and_ready_says_so(
        environment: Environment, services: Services) -> None:
    services.start("api")
    services.wait_for_api()
    # No worker at all is not a problem: the API may run alone.
    assert environment.get("/ready").status_code == 200
    work = environment.data_dir / "work"
    work.write_text("not a folder\n")

    for index, name in enumerate(("watcher", "transformer", "loader"), start=1):
        assert _exits(services.start(name)) == 1
        output = _output(services, index)
        line = f"chute {name}: cannot work: {work} is not a folder"
        assert line in output.splitlines(), output
        assert "Traceback" not in output

    message = _not_ready(environment)
    for name in ("watcher", "transformer", "loader"):
        assert f"{name} cannot work: {work} is not a folder" in message
    page = environment.get("/").text
    assert "<strong>watcher cannot work</strong>" in page and "is not a folder" in page

    # Fixed: a worker of each kind that starts fine clears its kind's reports.
    work.unlink()
    for name in ("watcher", "transformer", "loader"):
        services.start(name)
    wait_until(lambda: environment.get("/ready").status_code == 200, 30,
               what="/ready to be 200 once the workers start fine")
    assert "cannot work" not in environment.get("/").text
    environment.drop("sample.csv", SAMPLE)
    assert environment.wait_final("sample.csv")["rows_loaded"] == 15


def test_a_watcher_that_loses_the_data_folder_stops_and_leaves_the_file_in_the_inbox(
        environment: Environment, services: Services) -> None:
    services.start("api")
    watcher = services.start("watcher")
    services.wait_for_api()
    wait_until(lambda: (environment.data_dir / "work").is_dir(), 30,
               what="the watcher to create work/")
    shutil.rmtree(environment.data_dir / "work")
    (environment.data_dir / "work").write_text("not a folder\n")

    dropped = environment.drop("sample.csv", SAMPLE)

    assert _exits(watcher) == 1
    output = _output(services, 1)
    assert "chute watcher: cannot work: " in output and "Traceback" not in output
    assert "watcher cannot work" in _not_ready(environment)
    assert dropped.read_bytes() == SAMPLE  # nothing taken, nothing lost


def test_a_report_nobody_renewed_for_five_minutes_no_longer_counts(
        environment: Environment, services: Services) -> None:
    services.start("api")
    services.wait_for_api()
    environment.sql("""INSERT INTO chute.worker_problems (service, instance, problem,
                       reported_at) VALUES ('loader', 'gone', 'old news',
                       now() - interval '301 seconds')""")
    assert environment.get("/ready").status_code == 200
    environment.sql("UPDATE chute.worker_problems SET reported_at = now()")
    assert _not_ready(environment) == "loader cannot work: old news"
