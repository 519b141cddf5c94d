"""Pauses between attempts of a step that keeps failing for one file.

One file the watcher cannot claim or move must never stop the others, nor fill the log
every few seconds: each failure doubles the pause before its next attempt (5 s, 10 s,
20 s, ... at most an hour), and after MAX_ATTEMPTS the watcher stops trying that file
until it restarts. The file is never dropped: it stays where it is (in the inbox, or in
work/ with its move_error recorded) and a restarted watcher tries it again. Times are
monotonic: a clock stepped back does not hold attempts up.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

FIRST_PAUSE = 5.0
MAX_PAUSE = 3600.0
MAX_ATTEMPTS = 10  # about 1 h 25 min of attempts in all


class Backoff:
    def __init__(self, step: str) -> None:
        self.step = step
        self._failing: dict[str, tuple[int, float]] = {}  # key -> (failures, next due)

    def due(self, key: str) -> bool:
        failing = self._failing.get(key)
        return failing is None or (failing[0] < MAX_ATTEMPTS
                                   and time.monotonic() >= failing[1])

    def failed(self, key: str, file_name: str, error: BaseException) -> None:
        failures = self._failing.get(key, (0, 0.0))[0] + 1
        pause = min(FIRST_PAUSE * 2 ** (failures - 1), MAX_PAUSE)
        self._failing[key] = (failures, time.monotonic() + pause)
        given_up = failures >= MAX_ATTEMPTS
        log.error(f"cannot {self.step} a file" + (": given up until the watcher restarts"
                                                  if given_up else ", will try again"),
                  extra={"key": key, "file_name": file_name, "error": repr(error),
                         "failures": failures, "retry_in_s": None if given_up else pause})

    def succeeded(self, key: str) -> None:
        self._failing.pop(key, None)
