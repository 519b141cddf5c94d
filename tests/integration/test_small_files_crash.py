"""A burst of many small files while chute's own workers are SIGKILLed: every file ends
once in its state, every row once.

Small files go through the paths big files do not: a file of one batch is one message
whose batch closes the file (no FileDone), small files are read row by row, and many
files are in flight in every worker at once. Only chute's processes are killed; the
shared RabbitMQ and PostgreSQL are left alone (test_crash.py covers their outages).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from test_crash import CsvFile, assert_loaded_exactly, generate, logged, wait_all_final

from harness import Environment, Services, wait_until

FILES = 2_000
KILLS = 8


def start(services: Services, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    process = services.start(name)
    return process, services.environment.logs / f"{len(services.processes) - 1:02d}-{name}.log"


def unfinished(environment: Environment) -> int:
    return environment.sql(
        "SELECT count(*) FROM chute.files WHERE state IN ('received', 'processing')")[0][0]


def test_killed_workers_in_a_burst_of_small_files_lose_and_double_nothing(
        environment: Environment, services: Services) -> None:
    seed = int(os.environ.get("CHUTE_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"chaos seed {seed} (CHUTE_CHAOS_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    # 1 to 40 rows, every 7th row rejected; a few files of several batches (batch size 25)
    # so that closing batches and FileDones both meet the kills.
    files: list[CsvFile] = [generate(f"s{n:04d}.csv", rng.randrange(1, 40), reject_every=7)
                            for n in range(FILES)]
    environment.env["CHUTE_BATCH_SIZE"] = "25"
    watcher, _ = start(services, "watcher")
    workers = [start(services, name) for name in ("transformer", "loader", "loader")]
    wait_until(lambda: all('"event": "consuming"' in log.read_text() for _p, log in workers),
               60, 0.2, what="the workers to consume")

    for csv in files:  # the burst: as fast as files can be written and renamed in
        environment.drop(csv.name, csv.content)
    in_hand = []  # files unfinished at each kill: a kill must land on work in hand
    for round_no in range(KILLS):
        time.sleep(rng.uniform(0.5, 1.5))
        in_hand.append(unfinished(environment))
        index = rng.randrange(len(workers))
        process, _log = workers[index]
        process.send_signal(signal.SIGKILL)
        process.wait()
        workers[index] = start(services, str(process.args[-1]))
        if round_no == 3:
            watcher.send_signal(signal.SIGKILL)
            watcher.wait()
            watcher, _ = start(services, "watcher")
    print(f"files unfinished at each kill: {in_hand}")
    assert max(in_hand) > 0, "every kill landed after the burst was done: nothing was tested"

    wait_all_final(environment, FILES, 150)
    print(f"batches skipped by the ledger: {len(logged(environment, 'batch already loaded'))};"
          f" files transformed {len(logged(environment, 'file transformed'))} times")
    assert_loaded_exactly(environment, files)
