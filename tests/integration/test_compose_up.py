"""End to end against the real `docker compose up --build`, wherever a Docker engine runs.

Twice: with the data folder owned by root and by a UID that exists nowhere (4321). Each
run has a temporary data folder, a compose project and free host ports of its own, so
the repository's data/ and any other stack are never touched; the image tag is one per
checkout, so the second run (and the next `make test`) reuses the build.

Each run checks that the services run as the owner with no capabilities and that
every file they write belongs to it; that files load, with rejects, and a bad one is
quarantined with its reason; that files dropped by other users (root among them) load
and are archived, keeping their owner, and that one the services may not read is
quarantined with that reason; that a worker that cannot write is never silent; then it
scales the workers, restarts PostgreSQL and RabbitMQ under load, takes the stack down
and up again, checks that every file ended in archive/ or quarantine/ with nothing left
in work/, and that `down -v` leaves nothing behind. About 3.5 minutes a run on 2 cores.
Compose v2 (`docker compose`) and v1 (`docker-compose`) both work; v1 has no `up --wait`,
so the test waits for every health check itself.

Where no engine can run, the test says why and skips; test_compose.py checks the
compose file statically everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from composefile import compose_command
from conftest import SAMPLE
from harness import REPO, free_port

COMPOSE_FILE = REPO / "docker-compose.yml"
# One tag per checkout: cached between runs, and never another checkout's build.
IMAGE = f"chute-test-{hashlib.sha1(str(REPO).encode()).hexdigest()[:10]}:latest"
APP = ("watcher", "transformer", "loader", "api")
WORKERS = ("watcher", "transformer", "loader")
OTHER_UID = 4321
STRANGER_UID = 5678  # drops files, owns no data folder
HEADER = b"fullname,age,location\n"
BAD_ROWS = HEADER + (
    b"Ada Lovelace,36,London\n"       # 2
    b"Nobody,abc,Nowhere\n"           # 3: age not a number
    b" ,30,Paris\n"                   # 4: empty name
    b"Alan Turing,41,Wilmslow\n"      # 5
    b"Old Timer,200,Rome\n"           # 6: age out of range
    b"Too,Many,Fields,Here\n"         # 7: wrong number of fields
    b"Grace Hopper,85,Arlington\n"    # 8
    b"Plato,80,Athens\n"              # 9
)
BAD_LINES = [3, 4, 6, 7]
UNREADABLE = "unreadable.csv"  # mode 600, another user's: quarantined, never read
QUARANTINED = {"headless.csv", UNREADABLE}
Kept = tuple[tuple[int, int], int]  # a dropped file's (uid, gid) and mode, kept when moved


def _engine_problem() -> str | None:
    if not shutil.which("docker"):
        return "no docker command here: the compose end-to-end test needs a Docker engine"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine reachable ({reason}); docker-compose.yml is checked " \
               "statically instead (test_compose.py)"
    return None


def rows(prefix: str, count: int) -> bytes:
    """`count` valid rows, unique to `prefix` (equal files would be duplicates)."""
    return HEADER + "".join(f"{prefix} Person{i},{i % 151},Town{i % 53}\n"
                            for i in range(count)).encode()


class Stack:
    """One compose project on a private data folder and free host ports."""

    def __init__(self, data_dir: Path, owner: tuple[int, int]) -> None:
        self.data_dir = data_dir
        self.owner = owner
        self.project = f"chute-e2e-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {
            **os.environ,
            "CHUTE_HOST_DATA_DIR": str(data_dir),
            "CHUTE_HOST_PORT": str(self.port),
            "CHUTE_HOST_RABBITMQ_UI": str(free_port()),
            "CHUTE_IMAGE": IMAGE,
        }
        self.command = [*compose_command(), "-p", self.project, "-f", str(COMPOSE_FILE)]
        self.v1 = self.command[0] == "docker-compose"

    # --- compose and docker --------------------------------------------------------

    def compose(self, *args: str, timeout: float = 180, show: tuple[str, ...] = APP) -> str:
        try:
            result = subprocess.run([*self.command, *args], env=self.env, text=True,
                                    capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`compose {' '.join(args)}` did not finish within "
                                 f"{timeout:.0f} s{self.tails(show)}") from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise AssertionError(f"`compose {' '.join(args)}` failed: {last}"
                                 f"{self.tails(show)}")
        return result.stdout

    def up(self, *args: str, timeout: float = 240) -> None:
        """`up -d`, then every container running and healthy (v2: `--wait` as well)."""
        self.compose("up", "-d", *(() if self.v1 else ("--wait",)), *args, timeout=timeout)
        self.wait(self.all_healthy, 120, "every container running and healthy",
                  lambda: self.unhealthy() or list(APP))

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        label = f"label=com.docker.compose.project={self.project}"
        ids = _docker("ps", "-aq", "--filter", label).split()
        if not ids:
            return []
        found = json.loads(_docker("inspect", *ids))
        return [c for c in found if service is None
                or c["Config"]["Labels"].get("com.docker.compose.service") == service]

    def unhealthy(self) -> list[str]:
        return sorted({c["Config"]["Labels"]["com.docker.compose.service"]
                       for c in self.containers() if not _healthy(c)})

    def all_healthy(self) -> bool:
        containers = self.containers()
        return bool(containers) and all(_healthy(c) for c in containers)

    def exec(self, service: str, *argv: str) -> str:
        return _docker("exec", self.containers(service)[0]["Id"], *argv)

    def sql(self, query: str) -> list[list[str]]:
        out = self.exec("postgres", "psql", "-U", "chute", "-d", "chute", "-tAF|", "-c", query)
        return [line.split("|") for line in out.splitlines() if line]

    def tails(self, services: tuple[str, ...] | list[str], lines: int = 12) -> str:
        """The last log lines of `services`, to follow a failure's one-line message."""
        parts = []
        for service in services:
            result = subprocess.run([*self.command, "logs", "--no-color", "--tail",
                                     str(lines), service], env=self.env, text=True,
                                    capture_output=True, timeout=60)
            parts.append(f"\n--- last log lines of {service}:\n{result.stdout.strip()}")
        return "".join(parts)

    def wait(self, check: Callable[[], Any], timeout: float, what: str,
             failing: Callable[[], list[str]] | tuple[str, ...] = WORKERS) -> Any:
        """`check()` until true; else one line naming `what`, then the logs of the
        services at fault (`failing`, or a function that names them)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except (OSError, subprocess.CalledProcessError, ValueError, LookupError):
                value = None  # not there yet, or a service restarting
            if value:
                return value
            if time.monotonic() > deadline:
                services = failing() if callable(failing) else failing
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                     f"{self.tails(services)}")
            time.sleep(0.5)

    # --- the API and the data folder -----------------------------------------------

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", params=params, timeout=10)

    def drop(self, name: str, content: bytes) -> None:
        """Written beside the inbox as the folder's owner, then renamed in, as a user
        would copy a file in."""
        staging = self.data_dir / ".staging"
        staging.mkdir(exist_ok=True)
        os.chown(staging, *self.owner)
        path = staging / name
        path.write_bytes(content)
        os.chown(path, *self.owner)
        os.rename(path, self.data_dir / "inbox" / name)

    def drop_as(self, name: str, content: bytes, uid: int, mode: int) -> Path:
        """Written straight into the inbox as user `uid` would (`sudo cp`, `sudo -u USER
        cp`): the file is theirs, with `mode`, before its first byte is written."""
        path = self.data_dir / "inbox" / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchown(fd, uid, uid)
        os.fchmod(fd, mode)  # not what the umask left
        with open(fd, "wb") as f:
            f.write(content)
        return path

    def files(self) -> dict[str, tuple[str, int, int]]:
        """Each file's latest arrival: name -> (state, rows_loaded, rows_rejected)."""
        found = self.sql("SELECT DISTINCT ON (name) name, state, coalesce(rows_loaded, 0), "
                         "coalesce(rows_rejected, 0) FROM chute.files ORDER BY name, seq DESC")
        return {name: (state, int(loaded), int(rejected))
                for name, state, loaded, rejected in found}

    def wait_loaded(self, expected: dict[str, tuple[int, int]], timeout: float) -> None:
        """Every named file `loaded` with exactly (rows loaded, rows rejected)."""
        want = {name: ("loaded", *counts) for name, counts in expected.items()}

        def done() -> bool:
            files = self.files()
            return all(files.get(name) == final for name, final in want.items())

        what = f"{len(want)} file(s) to load with the right counts"
        try:
            self.wait(done, timeout, what)
        except AssertionError as e:
            files = self.files()
            wrong = {n: files.get(n) for n, final in want.items() if files.get(n) != final}
            if not wrong:
                raise
            raise AssertionError(f"{wrong} (expected {want[next(iter(wrong))]}); {e}") \
                from None

    def wait_settled(self) -> None:
        """Nothing left in work/: every loaded file in archive/, every quarantined one in
        quarantine/ (a file may be `loaded` a moment before it moves)."""
        work = self.data_dir / "work"

        def placed() -> bool:
            if any(work.iterdir()):
                return False
            files = self.files()
            for state, folder in (("loaded", "archive"), ("quarantined", "quarantine")):
                there = {p.relative_to(self.data_dir / folder).as_posix()
                         for p in (self.data_dir / folder).rglob("*")
                         if p.is_file() and not p.name.endswith(".reason.txt")}
                if {n for n, (s, *_) in files.items() if s == state} - there:
                    return False
            return True

        try:
            self.wait(placed, 60, "every file out of work/, into archive/ or quarantine/")
        except AssertionError as e:
            left = sorted(p.relative_to(work).as_posix() for p in work.rglob("*")
                          if not p.is_dir())
            raise AssertionError(f"left in work/: {left}; {e}") from None

    def people(self) -> int:
        return int(self.sql("SELECT count(*) FROM people")[0][0])

    def down_everything(self) -> None:
        subprocess.run([*self.command, "down", "-v", "--remove-orphans"], env=self.env,
                       capture_output=True, timeout=300)


def _docker(*argv: str) -> str:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def _healthy(container: dict[str, Any]) -> bool:
    state = container["State"]
    return state["Status"] == "running" and state.get("Health", {}).get("Status") == "healthy"


def _status(proc_status: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in
            (line.partition(":") for line in proc_status.splitlines())}


@pytest.fixture
def engine() -> None:
    problem = _engine_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(params=["root", "uid-4321"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, engine: None) -> Iterator[Stack]:
    owner = (0, 0) if request.param == "root" else (OTHER_UID, OTHER_UID)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, *owner)
    stack = Stack(data_dir, owner)
    before = _image_id()
    try:
        yield stack
    finally:
        stack.down_everything()
        if before and _image_id() not in (None, before):
            # Rebuilt for changed code: the previous build would only take up disk.
            subprocess.run(["docker", "image", "rm", before], capture_output=True, timeout=120)


def _image_id() -> str | None:
    found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE],
                           capture_output=True, text=True, timeout=60)
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.mark.timeout(1200)
def test_compose_stack_end_to_end(stack: Stack) -> None:
    owner_uid, owner_gid = stack.owner
    stack.up("--build", timeout=900)
    # Healthy containers, then ready: the API's first answer may still find the broker
    # or the database busy starting (seen once under a loaded machine).
    stack.wait(lambda: stack.get("/ready").status_code == 200, 60, "/ready to answer 200",
               APP)

    # The services run as the data folder's owner (the api, with no folder, as the
    # image's own user), with no capability at all: root included.
    for service in APP:
        status = _status(stack.exec(service, "cat", "/proc/1/status"))
        uid = int(status["Uid"].split()[0])
        if service == "api":
            assert uid != 0, "the api runs as root"
        else:
            assert status["Uid"].split() == [str(owner_uid)] * 4, (service, status["Uid"])
            assert status["Gid"].split() == [str(owner_gid)] * 4, (service, status["Gid"])
        for caps in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[caps], 16) == 0, (service, caps, status[caps])
        assert status["NoNewPrivs"] == "1", service
    # The workers' health check asks /health on the metrics port, and it answers "ok"
    # (not the metrics, which the port serves on every other path).
    for service in WORKERS:
        assert stack.exec(service, "python", "-c", "import urllib.request; print(urllib."
                          "request.urlopen('http://127.0.0.1:9100/health', timeout=3)"
                          ".read().decode(), end='')") == "ok\n", service

    # The sample, a 200k-row file, a file of bad rows, a file without a header.
    stack.drop("sample.csv", SAMPLE)
    stack.wait_loaded({"sample.csv": (15, 0)}, 60)
    assert len(stack.get("/read/first-chunk", num_records=100).json()) == 15
    assert (stack.data_dir / "archive" / "sample.csv").read_bytes() == SAMPLE
    stack.drop("big.csv", rows("Big", 200_000))
    stack.drop("bad.csv", BAD_ROWS)
    stack.drop("headless.csv", b"name,years\nAda,36\n")
    stack.wait_loaded({"big.csv": (200_000, 0), "bad.csv": (4, 4)}, 180)
    bad_id = stack.sql("SELECT file_id FROM chute.files WHERE name = 'bad.csv'")[0][0]
    rejects = stack.get(f"/files/{bad_id}/rejects").json()["items"]
    assert [r["line"] for r in rejects] == BAD_LINES
    stack.wait(lambda: stack.files().get("headless.csv", ("",))[0] == "quarantined", 60,
               "headless.csv to be quarantined")
    reason = stack.data_dir / "quarantine" / "headless.csv.reason.txt"
    assert "no header" in stack.wait(reason.read_text, 10, "the reason file")
    expected_rows = 15 + 200_000 + 4
    assert stack.people() == expected_rows

    others = _files_of_other_users_are_handled(stack)
    expected_rows += 2 * 50

    _a_worker_that_cannot_write_is_never_silent(stack)

    _scale_restart_and_come_back(stack, expected_rows)
    stack.wait_settled()

    # Whatever the stack wrote in the data folder belongs to the folder's owner; the
    # files others dropped are still theirs, with their mode (moves are renames).
    for path in [stack.data_dir, *stack.data_dir.rglob("*")]:
        st = path.lstat()
        owner, mode = others.get(path, (stack.owner, None))
        assert (st.st_uid, st.st_gid) == owner, f"{path} belongs to {st.st_uid}"
        assert mode is None or st.st_mode & 0o7777 == mode, f"{path}: mode {st.st_mode:o}"
    assert {p.name for p in stack.data_dir.iterdir()} >= {
        "inbox", "work", "archive", "quarantine"}

    stack.compose("down", "-v", timeout=300)
    label = f"label=com.docker.compose.project={stack.project}"
    for kind in ("container", "network", "volume"):
        listed = _docker(kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                         "--filter", label).split()
        named = [n for n in _docker(kind, "ls", "--format", "{{.Names}}" if kind ==
                 "container" else "{{.Name}}", *(["-a"] if kind == "container" else []))
                 .split() if n.startswith((f"{stack.project}_", f"{stack.project}-"))]
        assert not listed and not named, f"`down -v` left {kind}s: {listed or named}"


def _files_of_other_users_are_handled(stack: Stack) -> dict[Path, Kept]:
    """Files dropped into the inbox by two users who do not own the data folder (root
    among them, when it is not root's), mode 644: the services, running as the folder's
    owner, may read them but own none, and the files load and are archived all the same
    (issue 22: they used to stay in work/, as a hard link needs ownership under Linux's
    fs.protected_hardlinks). A file of mode 600 of another user is quarantined, saying
    why, and the others still load. Returns each one's final path -> (owner, mode)."""
    strangers = [uid for uid in (0, STRANGER_UID, OTHER_UID) if uid != stack.owner[0]]
    secret = rows("Secret", 10)
    stack.drop_as(UNREADABLE, secret, strangers[0], 0o600)
    dropped = {f"from-uid-{uid}.csv": (uid, rows(f"Uid{uid}", 50)) for uid in strangers}
    for name, (uid, content) in dropped.items():
        stack.drop_as(name, content, uid, 0o644)
    stack.wait_loaded({name: (50, 0) for name in dropped}, 60)
    stack.wait(lambda: stack.files().get(UNREADABLE, ("",))[0] == "quarantined", 60,
               f"{UNREADABLE} to be quarantined")
    stack.wait_settled()

    archive, quarantine = stack.data_dir / "archive", stack.data_dir / "quarantine"
    for name, (_uid, content) in dropped.items():
        assert (archive / name).read_bytes() == content, name
    assert (quarantine / UNREADABLE).read_bytes() == secret
    error = stack.get("/files", name=UNREADABLE).json()["items"][0]["error"]
    assert error == f"cannot read: permission denied (owner uid {strangers[0]}, mode 600)"
    assert (quarantine / f"{UNREADABLE}.reason.txt").read_text() == error + "\n"
    return {quarantine / UNREADABLE: ((strangers[0],) * 2, 0o600)} | {
        archive / name: ((uid, uid), 0o644) for name, (uid, _) in dropped.items()}


def _a_worker_that_cannot_write_is_never_silent(stack: Stack) -> None:
    """archive/ given to someone else (root can't write it either: it has no
    capabilities): the watcher stops with one line, /ready and the status page say so,
    its health check fails; given back, all is well again."""
    archive = stack.data_dir / "archive"
    os.chown(archive, *((OTHER_UID, OTHER_UID) if stack.owner == (0, 0) else (0, 0)))
    stack.compose("restart", "watcher")

    def not_ready() -> str | None:
        answer = stack.get("/ready")
        return answer.json()["error"]["message"] if answer.status_code == 503 else None

    message = stack.wait(not_ready, 60, "/ready to say 503", ("watcher", "api"))
    assert "watcher cannot work: cannot write /data/archive (Permission denied)" in message
    assert "<strong>watcher cannot work</strong>" in stack.get("/").text
    stack.wait(lambda: stack.unhealthy() == ["watcher"], 30,
               "the watcher alone to fail its health check", ("watcher",))
    logs = subprocess.run([*stack.command, "logs", "--no-color", "watcher"], env=stack.env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "chute watcher: cannot work: cannot write /data/archive" in logs
    assert "Traceback" not in logs

    os.chown(archive, *stack.owner)
    stack.compose("restart", "watcher")
    stack.wait(lambda: stack.get("/ready").status_code == 200, 60, "/ready to be 200 again",
               ("watcher", "api"))
    stack.wait(stack.all_healthy, 60, "the watcher to be healthy again", ("watcher",))


def _scale_restart_and_come_back(stack: Stack, expected_rows: int) -> None:
    # Three transformers and three loaders: a burst of 20 files, every row once.
    stack.up("--scale", "transformer=3", "--scale", "loader=3")
    assert len(stack.containers("transformer")) == len(stack.containers("loader")) == 3
    burst = {f"burst-{i:02d}.csv": rows(f"Burst{i}", 1000) for i in range(20)}
    for name, content in burst.items():
        stack.drop(name, content)
    stack.wait_loaded({name: (1000, 0) for name in burst}, 180)
    expected_rows += 20 * 1000
    assert stack.people() == expected_rows

    # PostgreSQL, then RabbitMQ, restarted while files load: nothing lost, nothing doubled.
    waves = [{f"wave{w}-{i}.csv": rows(f"Wave{w}x{i}", 30_000) for i in range(6)}
             for w in (1, 2)]
    for wave, service in zip(waves, ("postgres", "rabbitmq"), strict=True):
        for name, content in wave.items():
            stack.drop(name, content)
        stack.wait(lambda wave=wave: set(stack.files()) & set(wave), 30,
                   "the watcher to register the wave")
        in_flight = [n for n, (state, *_) in stack.files().items()
                     if n in wave and state != "loaded"]
        assert in_flight, f"the files loaded before {service} could be restarted"
        stack.compose("restart", service, timeout=120, show=(service, *WORKERS))
    stack.wait_loaded({name: (30_000, 0) for wave in waves for name in wave}, 300)
    expected_rows += 12 * 30_000
    assert stack.people() == expected_rows
    assert not {n: f for n, f in stack.files().items() if f[0] != "loaded"
                and n not in QUARANTINED}
    stack.wait(stack.all_healthy, 120, "every container healthy after the restarts",
               stack.unhealthy)

    # Down and up: the rows are still there, and a file dropped meanwhile is taken.
    stack.compose("down", timeout=300)
    assert not stack.containers()
    stack.drop("while-down.csv", rows("Down", 500))
    stack.up()
    assert stack.people() >= expected_rows
    stack.wait_loaded({"while-down.csv": (500, 0), "sample.csv": (15, 0)}, 120)
    expected_rows += 500
    assert stack.people() == expected_rows
