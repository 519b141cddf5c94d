"""Static checks of the container description: Dockerfile, .dockerignore, docker-compose.yml.

Nothing is built or started. Compose itself validates the file and renders it normalised
(anchors merged, paths resolved); the tests read that rendering as JSON.
"""

import json
import re
import shlex
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from chute.commands.stack import REPLICAS, SERVICES
from composefile import compose_command, rendered, run

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKERS = ("transformer", "loader")
DOCUMENTED_ENV = {
    "CHUTE_AMQP_URL",
    "CHUTE_DATABASE_URL",
    "CHUTE_DATA_DIR",
    "CHUTE_NAMESPACE",
    "CHUTE_TABLE",
    "CHUTE_API_HOST",
    "CHUTE_API_PORT",
    "CHUTE_API_TOKEN",
    "CHUTE_BATCH_SIZE",
    "CHUTE_LOG_LEVEL",
    "CHUTE_METRICS_PORT",
    "CHUTE_DATASETS",
}


def compose(*args: str) -> str:
    result = run(*compose_command(), "-f", str(COMPOSE_FILE), *args)
    assert result.returncode == 0, f"compose {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@cache
def compose_config() -> dict:
    return rendered(COMPOSE_FILE)


def services() -> dict:
    return compose_config()["services"]


def argv(command: str | list | None) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def test_compose_file_is_valid():
    compose("config", "-q")


def test_each_stack_service_runs_its_module_from_the_one_shared_image():
    commands = {name: argv(service.get("command")) for name, service in services().items()}
    for name in SERVICES:
        assert commands.get(name) == ["python", "-m", name]
    module_runners = sorted(name for name, cmd in commands.items() if cmd[:2] == ["python", "-m"])
    assert module_runners == sorted(SERVICES)

    images = {json.dumps([services()[n].get(key) for key in ("build", "image")]) for n in SERVICES}
    assert len(images) == 1, "the app services must share one build and image"
    assert services()[SERVICES[0]].get("build"), "the app services must be built from the repo"


def test_app_environment_uses_only_documented_variables_and_compose_hostnames():
    for name in SERVICES:
        env = services()[name]["environment"]
        assert set(env) <= DOCUMENTED_ENV, f"{name}: undocumented {set(env) - DOCUMENTED_ENV}"
        assert urlsplit(env["CHUTE_AMQP_URL"]).hostname == "rabbitmq"
        assert urlsplit(env["CHUTE_DATABASE_URL"]).hostname == "postgres"
    assert {"rabbitmq", "postgres"} <= set(services())


def test_workers_can_be_scaled():
    for name in WORKERS:
        assert "container_name" not in services()[name], name
        assert not services()[name].get("ports"), name


def test_compose_runs_as_many_of_each_service_as_make_up():
    for name in SERVICES:
        replicas = services()[name].get("deploy", {}).get("replicas", 1)
        assert replicas == REPLICAS.get(name, 1), name


def test_api_publishes_port_8080():
    ports = {(str(p.get("published")), str(p["target"])) for p in services()["api"]["ports"]}
    assert ("8080", "8080") in ports


def test_every_service_has_a_healthcheck_probing_its_own_port():
    for name, service in services().items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name in SERVICES:
        env = services()[name]["environment"]
        if name == "api":
            expected = f"127.0.0.1:{env['CHUTE_API_PORT']}/health"
        else:
            expected = f"127.0.0.1:{env['CHUTE_METRICS_PORT']}/health"
        probe = " ".join(services()[name]["healthcheck"]["test"])
        assert expected in probe, f"{name}'s healthcheck does not probe {expected}"


def test_app_services_wait_for_a_healthy_broker_and_database():
    for name in SERVICES:
        depends_on = services()[name]["depends_on"]
        for dependency in ("rabbitmq", "postgres"):
            assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)


def test_image_is_python_311_installs_the_repo_with_pip_and_runs_unprivileged():
    instructions = dockerfile_instructions()
    base = [args for keyword, args in instructions if keyword == "FROM"][-1].split()[0]
    assert re.fullmatch(r"python:3\.11(\.\d+)?(-[\w.-]+)?(@sha256:[0-9a-f]{64})?", base), base
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip install\b.*\s\.(\s|$)", run) for run in runs)
    # No service runs as root with privileges: the entrypoint starts as root only to take
    # the data folder's owner and drop every capability (docker/entrypoint.sh), and any
    # USER set must not be root.
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert all(user.split(":")[0] not in {"root", "0"} for user in users)
    entrypoints = [json.loads(args) for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == ["/usr/local/bin/chute-entrypoint"]
    assert any("docker/entrypoint.sh /usr/local/bin/chute-entrypoint" in run for run in runs)


def test_entrypoint_runs_the_command_only_as_the_data_owner_without_capabilities():
    script = (ROOT / "docker" / "entrypoint.sh").read_text().replace("\\\n", " ")
    execs = [line.strip() for line in script.splitlines() if line.strip().startswith("exec ")]
    # Already unprivileged (--user): the command as it is. Else only through setpriv.
    assert execs[0] == 'exec "$@"'
    assert 'if [ "$(id -u)" != 0 ]; then\n    exec "$@"' in script
    assert len(execs) == 2 and execs[1].startswith("exec setpriv ")
    flags = set(shlex.split(execs[1]))
    assert {"--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            '--reuid=${owner%:*}', '--regid=${owner#*:}'} <= flags
    assert re.search(r'^owner=\$\(stat -c %u:%g "\$data"', script, re.MULTILINE)


def test_workers_mount_the_data_folder_and_the_api_only_the_datasets_file():
    def mounts(name: str) -> list[tuple[str, str]]:
        found = []
        for volume in services()[name].get("volumes", []):
            if isinstance(volume, str):  # compose v1 renders SOURCE:TARGET:MODE
                source, target = volume.split(":")[:2]
            else:
                source, target = volume["source"], volume["target"]
            found.append((source, target))
        return found

    datasets = (str(ROOT / "docker" / "no-datasets.toml"), "/etc/chute/chute.toml")
    for name in WORKERS + ("watcher",):
        assert mounts(name) == [(str(ROOT / "data"), "/data"), datasets], name
    assert mounts("api") == [datasets]  # the datasets file only, read-only


def test_dockerignore_keeps_venv_data_and_git_out_of_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = {line.strip().strip("/") for line in lines if not line.startswith("#")}
    assert {".venv", "data", ".git"} <= patterns
    assert not {"docker", "docker/entrypoint.sh"} & patterns, "the entrypoint is built in"
