"""Static checks of docker-compose.cluster.yml: compose validates and renders it; the
tests read the rendering. Nothing is built or started."""

import re
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import composefile
from chute.runtime.config import amqp_nodes
from composefile import compose_command

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")
APP = ("watcher", "transformer", "loader", "api")
COOKIE = "0123456789abcdef0123456789abcdef"


def run(*cmd: str, **env: str) -> subprocess.CompletedProcess:
    return composefile.run(*cmd, CHUTE_ERLANG_COOKIE="", **env)  # never the caller's cookie


@cache
def rendered() -> dict:
    """The file as compose understands it (anchors merged), as JSON."""
    return composefile.rendered(CLUSTER_FILE, CHUTE_ERLANG_COOKIE=COOKIE)


def test_without_a_cookie_compose_refuses_with_one_line_saying_so() -> None:
    result = run(*compose_command(), "-f", str(CLUSTER_FILE), "config", "-q")

    assert result.returncode != 0
    assert "set CHUTE_ERLANG_COOKIE to a secret shared by the nodes" in result.stderr


def test_every_app_service_lists_all_three_nodes() -> None:
    services = rendered()["services"]

    for name in APP:
        nodes = amqp_nodes(services[name]["environment"]["CHUTE_AMQP_URL"])
        assert [urlsplit(n).hostname for n in nodes] == list(NODES), name
        assert all(urlsplit(n).port == 5672 for n in nodes)
        assert "rabbitmq1" in services[name]["depends_on"]


def test_the_nodes_share_a_cookie_and_name_each_other() -> None:
    services = rendered()["services"]

    for name in NODES:
        node = services[name]
        assert node["hostname"] == name  # the node is rabbit@<hostname>
        assert node["environment"]["CHUTE_ERLANG_COOKIE"] == COOKIE
        script = node["entrypoint"][-1]
        assert re.findall(r"classic_config\.nodes\.\d = rabbit@(\w+)", script) == list(NODES)
        assert "exec docker-entrypoint.sh rabbitmq-server" in script
        # Its own volume: a node's identity and messages outlive the container.
        assert [(v["source"], v["target"]) if isinstance(v, dict) else
                tuple(v.split(":")[:2]) for v in node["volumes"]] \
            == [(name, "/var/lib/rabbitmq")]
    # The others join the first once it runs.
    assert services["rabbitmq2"]["depends_on"] == services["rabbitmq3"]["depends_on"] \
        == {"rabbitmq1": {"condition": "service_healthy"}}


def test_workers_scale_and_nothing_but_the_api_and_ui_is_published() -> None:
    services = rendered()["services"]

    assert services["transformer"]["deploy"]["replicas"] == 2
    assert services["loader"]["deploy"]["replicas"] == 2
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"api", "rabbitmq1"}
