"""`make up`: the four services in the foreground, natively.

The same modules docker-compose.yml runs (a test checks the two agree). Creates the
database and schema first, so the services start against a ready database; Ctrl-C or
SIGTERM stops them all, and if one of them exits, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from chute.runtime.service import Stop, load_config, prepare_database

SERVICES = ("watcher", "transformer", "loader", "api")
# Processes per service; docker-compose.yml runs as many (a test checks).
# Two loaders: PostgreSQL's work for a batch (the COPY and its indexes) runs in the
# loader's backend, and with one loader that backend is the limit. Measured on 2 cores
# (make bench, 1M rows, two runs each): 6.7-8.1 s with one loader, 6.5-6.9 s with two.
# Two transformers: a transformer is one thread that waits for PostgreSQL (the claim)
# and the broker (the confirms) between files, and with one, a burst of small files
# queues in front of it. Measured on 2 cores (bench.burst, 10,000 files of 100 rows, one
# run after the other): 212 files/s with one, 286 with two. A large file is read by one
# transformer either way.
REPLICAS = {"transformer": 2, "loader": 2}
GRACE_SECONDS = 15.0


def main() -> int:
    config = load_config("stack")
    stop = Stop()
    stop.install()
    prepare_database(config, stop, "stack")
    config.data_dir.joinpath("inbox").mkdir(parents=True, exist_ok=True)
    processes = {
        f"{name}-{n}" if REPLICAS.get(name, 1) > 1 else name:
            subprocess.Popen([sys.executable, "-m", name], env=os.environ.copy())
        for name in SERVICES for n in range(1, REPLICAS.get(name, 1) + 1)
    }
    print(
        f"chute: watching {config.data_dir / 'inbox'}; API on "
        f"http://{config.api_host}:{config.api_port}/ (Ctrl-C stops)",
        file=sys.stderr,
    )
    exit_code = 0
    while not stop():
        exited = {n: p.returncode for n, p in processes.items() if p.poll() is not None}
        if exited:
            print(f"chute: {', '.join(exited)} exited; stopping the others", file=sys.stderr)
            exit_code = 1
            break
        stop.wait(0.5)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
