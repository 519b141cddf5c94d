"""The console's replays and rebuilds: which requests the watcher runs, the command line
it builds, and how it logs a command that ended (a real `chute` process)."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest

from chute.errors import MessageDecodeError
from chute.rabbitmq.messages import CommandRequested
from chute.runtime.config import Config
from watcher.control import Commands, _refusal

FILE_ID = str(uuid.uuid4())


def request(command: str, file_id: str = "", dataset: str = "people") -> CommandRequested:
    return CommandRequested(command=command, file_id=file_id, dataset=dataset,
                            requested_at="2026-12-03T17:00:00+00:00")


def test_the_command_line_is_the_one_a_person_types() -> None:
    assert request("replay", FILE_ID).argv == ["replay", FILE_ID]
    assert request("rebuild").argv == ["rebuild", "people"]
    with pytest.raises(MessageDecodeError, match="no console command 'drop'"):
        _ = request("drop").argv


def test_a_request_round_trips_through_its_message() -> None:
    sent = request("replay", FILE_ID)
    assert CommandRequested.decode(*sent.encode()) == sent


def test_only_a_file_id_or_a_declared_dataset_reaches_the_command_line() -> None:
    config = Config.from_env({})
    assert _refusal(config, request("replay", FILE_ID)) is None
    assert _refusal(config, request("rebuild")) is None
    assert _refusal(config, request("replay", "--dataset=people")) == \
        "not a file id: '--dataset=people'"
    assert "no dataset 'nobody'" in (_refusal(config, request("rebuild", dataset="nobody"))
                                     or "")
    assert _refusal(config, request("truncate")) == "no console command 'truncate'"


def test_a_command_that_fails_is_logged_with_its_exit_code_and_output(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    # No database answers on this port: the real `chute replay` says so and exits 1.
    monkeypatch.setenv("CHUTE_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    monkeypatch.setenv("CHUTE_DATA_DIR", str(tmp_path))
    commands = Commands()
    caplog.set_level(logging.INFO, logger="watcher.control")
    commands.start(Config.from_env({}), request("replay", FILE_ID))
    commands.start(Config.from_env({}), request("replay", FILE_ID))  # a second click
    assert len(commands.running) == 1
    refused = [r for r in caplog.records if r.getMessage() == "console action refused"]
    assert [r.reason for r in refused] == [  # type: ignore[attr-defined]
        f"chute replay {FILE_ID} is running already"]
    deadline = time.monotonic() + 60
    while commands.running and time.monotonic() < deadline:
        commands.reap()
        time.sleep(0.1)
    assert not commands.running
    failed = [r for r in caplog.records if r.getMessage() == "console action failed"]
    assert len(failed) == 1
    assert failed[0].exit_code == 1  # type: ignore[attr-defined]
    assert "chute:" in failed[0].output  # type: ignore[attr-defined]
