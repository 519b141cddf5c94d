"""The console's actions, carried out by the watcher: it owns the data folder and writes
the ledger, which the API's read-only role cannot (see docs/console.md).

A request is handled at most once in effect, whatever happens: one that cannot be
decoded, or names a file that is not retryable, is logged with the reason and dropped
(acked); it never stops the watcher. Only an outage of the database or the broker
leaves it unacknowledged, to be delivered again once the watcher has reconnected; a
retry cut short by that outage is finished by the watcher's repair of work/ (the file
is `received` there), and the request delivered again is then refused as not retryable.

A replay or a rebuild may take minutes: the watcher starts the `chute` command a person
would type, as a process of its own, acks the request, and logs how the command ended
(Commands.reap, from the watcher's loop). Both commands are safe to kill and to run
again (a replay goes file by file, a rebuild picks up where it stopped), so a watcher
that dies meanwhile loses nothing; a second request for a command still running is
refused.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from typing import IO

from chute.commands.retry import retry_file
from chute.errors import BrokerUnavailable, DatabaseUnavailable, MessageDecodeError, RetryError
from chute.rabbitmq.broker import Broker, Delivery
from chute.rabbitmq.messages import CommandRequested, RetryRequested
from chute.runtime.config import Config

log = logging.getLogger(__name__)

OUTPUT_TAIL = 2000  # characters of a command's output kept in its log line


@dataclass
class _Running:
    request: CommandRequested
    process: subprocess.Popen[bytes]
    output: IO[bytes]  # a temporary file: a pipe nobody reads could fill and stall it


class Commands:
    """The replays and rebuilds the console asked for, each a `chute` process."""

    def __init__(self) -> None:
        self.running: list[_Running] = []

    def start(self, config: Config, request: CommandRequested) -> None:
        problem = _refusal(config, request)
        if problem is None and any(r.request.argv == request.argv for r in self.running):
            problem = f"chute {' '.join(request.argv)} is running already"
        context = _context(request)
        if problem is not None:
            log.warning("console action refused", extra={**context, "reason": problem})
            return
        output = tempfile.TemporaryFile()
        # "--": a file id or dataset name is never read as an option. The environment,
        # and so the configuration, is the watcher's.
        argv = [sys.executable, "-m", "chute.commands.cli", *request.argv[:1], "--",
                *request.argv[1:]]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT)
        self.running.append(_Running(request, process, output))
        log.info("console action started", extra={**context, "pid": process.pid})

    def reap(self) -> None:
        """Log each command that has ended, with the end of what it printed."""
        for done in [r for r in self.running if r.process.poll() is not None]:
            self.running.remove(done)
            done.output.seek(0)
            printed = done.output.read().decode("utf-8", "replace").strip()[-OUTPUT_TAIL:]
            done.output.close()
            context = {**_context(done.request), "exit_code": done.process.returncode,
                       "output": printed}
            if done.process.returncode == 0:
                log.info("console action done", extra=context)
            else:
                log.warning("console action failed", extra=context)


def _context(request: CommandRequested) -> dict[str, str]:
    return {"action": request.command, "file_id": request.file_id,
            "dataset": request.dataset, "requested_at": request.requested_at}


def _refusal(config: Config, request: CommandRequested) -> str | None:
    """Why this request cannot run, or None: the command line takes only a known
    command with a file id or a declared dataset."""
    if request.command not in CommandRequested.COMMANDS:
        return f"no console command {request.command!r}"
    if request.command == "replay":
        try:
            uuid.UUID(request.file_id)
        except ValueError:
            return f"not a file id: {request.file_id!r}"
    elif config.datasets.get(request.dataset) is None:
        return f"no dataset {request.dataset!r} in {config.datasets.source}"
    return None


def handle_control(config: Config, broker: Broker, delivery: Delivery,
                   commands: Commands) -> None:
    """pika calls this (through Broker.consume, in the watcher's thread) for each message
    of {ns}.control."""
    if (delivery.headers or {}).get("kind") == CommandRequested.KIND:
        try:
            commands.start(config, CommandRequested.decode(delivery.headers, delivery.body))
        except MessageDecodeError as e:
            log.warning("console action dropped: not a request", extra={"reason": str(e)})
        except OSError as e:  # the process could not start: said, and the watcher goes on
            log.error("console action failed to start", extra={"reason": str(e)})
        broker.ack(delivery)
        return
    try:
        request = RetryRequested.decode(delivery.headers, delivery.body)
    except MessageDecodeError as e:
        log.warning("console action dropped: not a request", extra={"reason": str(e)})
        broker.ack(delivery)
        return
    context = {"action": "retry", "file_id": request.file_id,
               "requested_at": request.requested_at}
    try:
        name = retry_file(config, request.file_id)
    except RetryError as e:
        log.warning("console action refused", extra={**context, "reason": str(e)})
    except (BrokerUnavailable, DatabaseUnavailable):
        raise  # unacknowledged: delivered again after the reconnect
    except Exception as e:  # noqa: BLE001 - one bad request must never stop the watcher
        log.exception("console action failed", extra={**context, "reason": repr(e)})
    else:
        log.info("console action done: file sent round again", extra={**context, "file_name": name})
    broker.ack(delivery)
