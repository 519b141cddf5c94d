"""One JSON object per line on stderr, from every service.

Context travels as `extra={...}` fields (file_id, name, counts, durations); the
formatter copies them into the object. Never log whole rows or secrets.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed through `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": _logger_name(record.name),
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _logger_name(name: str) -> str:
    """A core module's logger as the lines have always named it, without its package
    (chute.db, not chute.postgres.db): queries over the logs keep working."""
    if name.startswith("chute.") and name.count(".") >= 2:
        return "chute." + name.rpartition(".")[2]
    return name


def setup(service: str, level: str) -> None:
    # What the lines never show, not collected (the logging HOWTO's "Optimization"): the
    # caller's file and line (a walk up the stack for every record), thread and process
    # names. A burst of small files logs a few lines per file in every worker.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp and asyncio are chatty at INFO; their warnings still show.
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # pika logs several errors and a traceback for every refused connection; chute.runtime.service
    # already logs one warning per reconnect, with the reason.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
