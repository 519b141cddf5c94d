"""Private clusters for tests: three RabbitMQ nodes and a PostgreSQL primary + standby.

Everything runs as processes of our own on loopback, with its own names, ports, data
folders and Erlang cookie, beside the machine's RabbitMQ (rabbit@localhost, 5672) and
PostgreSQL (5432), which are never touched. Each start is paired with a stop that runs
whatever happens (the test's fixtures call `stop` in `finally`).

RabbitMQ: Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user, but
/usr/lib/rabbitmq/bin/rabbitmq-server runs a node as the current user, configured by
the environment: HOME holds the cookie, RABBITMQ_* name the node and its files.

PostgreSQL: the machine's server has no `replication` line in pg_hba.conf, and its
configuration is not ours to change, so the standby follows a primary of our own
(initdb on another port), run as the `postgres` OS user because PostgreSQL refuses
to run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg2

from harness import free_port, wait_until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class RabbitNode:
    """One node: its name, ports and files, all under the cluster's folder."""

    def __init__(self, cluster: RabbitCluster, index: int) -> None:
        self.cluster = cluster
        self.name = f"{cluster.prefix}-{index}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.base = cluster.root / f"node{index}"
        self.base.mkdir()
        config = self.base / "rabbitmq.conf"
        # Loopback only; the default user guest may log in from loopback anyway.
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
                          "loopback_users.guest = true\n")
        self.env = {
            **cluster.env,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(cluster.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(config),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        """Start the node's Erlang VM and RabbitMQ in it, and wait until it serves."""
        subprocess.run([RABBIT_BIN / "rabbitmq-server", "-detached"], env=self.env,
                       check=True, capture_output=True, timeout=60)
        self.await_startup()

    def await_startup(self) -> None:
        """Wait until RabbitMQ runs on the node; the VM registers with epmd only after
        a moment, and await_startup fails at once on a node it cannot see yet."""
        self.ctl("wait", "--timeout", "120", str(self.base / "rabbit.pid"), timeout=150)
        self.ctl("await_startup", timeout=120)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl against this node only (never the machine's own)."""
        done = subprocess.run([RABBIT_BIN / "rabbitmqctl", "-n", self.name, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: "
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def raise_memory_alarm(self) -> None:
        """Set the node's memory alarm: a watermark no VM is below. The node blocks
        every connection that publishes until clear_memory_alarm."""
        self.ctl("set_vm_memory_high_watermark", "0.0000001")
        wait_until(lambda: "memory" in self.alarms(), 30, 0.2, what=f"{self.name}'s alarm")

    def clear_memory_alarm(self) -> None:
        """Back to RabbitMQ's default watermark (0.4 of the machine's memory)."""
        self.ctl("set_vm_memory_high_watermark", "0.4")
        wait_until(lambda: "memory" not in self.alarms(), 30, 0.2,
                   what=f"{self.name}'s alarm to clear")

    def alarms(self) -> str:
        """The node's resource alarms in force (rabbit_alarm:get_alarms(), as Erlang
        prints it): "memory" appears while the memory alarm holds."""
        return self.ctl("eval", "rabbit_alarm:get_alarms().")

    def pid(self) -> int | None:
        try:
            return int((self.base / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM: no goodbye to clients or peers."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"{self.name} has no pid file")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 30, 0.2, what=f"{self.name} to die")

    def stop(self) -> None:
        """Stop the whole VM: politely, then by force."""
        try:
            self.ctl("shutdown", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        pid = self.pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


class RabbitCluster:
    """Three nodes joined into one cluster, named after a random prefix."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.prefix = f"chute-test-{secrets.token_hex(4)}"
        home = root / "home"
        home.mkdir(mode=0o700, parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o600)
        (root / "enabled_plugins").write_text("[].\n")
        # An env file of our own, so that /etc/rabbitmq/rabbitmq-env.conf (the machine's
        # node name) is not read.
        (root / "rabbitmq-env.conf").write_text("")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            # Erlang distribution on loopback only; epmd is the machine's (127.0.0.1).
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.nodes = [RabbitNode(self, i) for i in range(1, size + 1)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.await_startup()

    def urls(self, order: list[int] | None = None) -> str:
        """CHUTE_AMQP_URL for the cluster: the nodes' URLs, in `order` (indexes)."""
        order = order or list(range(len(self.nodes)))
        return ",".join(self.nodes[i].url for i in order)

    def node(self, name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == name)

    def queue_leaders(self, vhost_queues: list[str], via: RabbitNode | None = None
                      ) -> dict[str, tuple[str, list[str]]]:
        """{queue: (leader, online members)} for quorum queues, asked of a running node."""
        via = via or self.running()[0]
        out = via.ctl("list_queues", "-q", "--formatter", "json",
                      "name", "type", "leader", "online")
        found = {}
        for item in json.loads(out):
            if item["name"] in vhost_queues:
                found[item["name"]] = (item.get("leader"), list(item.get("online") or []))
        return found

    def running(self) -> list[RabbitNode]:
        """Nodes whose RabbitMQ application answers."""
        alive = []
        for node in self.nodes:
            try:
                node.ctl("status", timeout=30)  # fails when the app is stopped, too
                alive.append(node)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        return alive

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


class PostgresServer:
    """A PostgreSQL server of our own in `data`, run as the postgres OS user."""

    def __init__(self, data: Path, port: int | None = None) -> None:
        self.data = data
        self.port = port or free_port()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *command: str | Path, timeout: float = 120) -> None:
        done = subprocess.run(_as_postgres(*command), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]}: {done.stdout}{done.stderr}")

    def initdb(self, **settings: str) -> None:
        """A new, empty server in `data` (its parent folder must exist), owned by the
        postgres OS user, with `settings` added to its postgresql.conf."""
        postgres = pwd.getpwnam("postgres")
        os.chown(self.data.parent, postgres.pw_uid, postgres.pw_gid)
        self.run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--locale=C.UTF-8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("fsync = off\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        self.run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.data / "server.log",
                 "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                 "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)


class PostgresPair:
    """A primary (initdb) and a streaming hot standby of it (pg_basebackup -R)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
        self.primary = PostgresServer(root / "primary")
        self.standby = PostgresServer(root / "standby")

    def start(self) -> None:
        self.primary.run(PG_BIN / "initdb", "-D", self.primary.data, "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            # The defaults of 15 already stream (wal_level replica, 10 WAL senders); a
            # standby's queries do not hold the primary back from vacuuming without
            # feedback, and can be cancelled: say so to the primary.
            conf.write("fsync = off\nhot_standby_feedback = on\n")
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self.primary.start()
        self.primary.run(PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p",
                         str(self.primary.port), "-U", "postgres", "-D", self.standby.data,
                         "-R", "-X", "stream", "-c", "fast")
        self.standby.start()
        wait_until(self._streaming, 60, 0.2, what="the standby to stream")

    def _streaming(self) -> bool:
        conn = psycopg2.connect(self.primary.admin_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                return cur.fetchone()[0] == 1
        finally:
            conn.close()

    def caught_up(self) -> bool:
        """The standby has replayed everything the primary had written when asked."""
        conn = psycopg2.connect(self.primary.admin_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_current_wal_lsn()")
                target = cur.fetchone()[0]
        finally:
            conn.close()
        standby = psycopg2.connect(self.standby.admin_url)
        try:
            with standby, standby.cursor() as cur:
                cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
                return bool(cur.fetchone()[0])
        finally:
            standby.close()

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(*command: str | Path) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres OS user."""
    args = [str(c) for c in command]
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args
