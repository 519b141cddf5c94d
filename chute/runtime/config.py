"""Configuration: the environment, read and validated once at start-up.

Every variable is optional. A bad value raises ConfigError with one line naming the
variable, which each service prints instead of a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from chute.errors import ConfigError, DatasetsError

if TYPE_CHECKING:  # read in _datasets: the types bring pyarrow, which `chute status` needs not
    from chute.datasets.declarations import Datasets

DEFAULTS = {
    "CHUTE_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "CHUTE_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/chute",
    "CHUTE_DATA_DIR": "./data",
    "CHUTE_NAMESPACE": "chute",
    "CHUTE_TABLE": "people",
    "CHUTE_API_HOST": "127.0.0.1",
    "CHUTE_API_PORT": "8080",
    "CHUTE_BATCH_SIZE": "10000",
    "CHUTE_PREFETCH": "8",
    "CHUTE_LOG_LEVEL": "INFO",
    # A compressed file may expand to this much text, and this many times its size once
    # past 64 MiB (chute/reading/streams.py): a decompression bomb never fills the disk.
    "CHUTE_MAX_DECOMPRESSED_BYTES": str(8 << 30),
    "CHUTE_MAX_COMPRESSION_RATIO": "200",
    # A file of at least two ranges of this size is cut into ranges that several
    # transformers read at once (chute/reading/ranges.py); 0 reads every file whole.
    "CHUTE_RANGE_BYTES": str(8 << 20),
}
# Without CHUTE_DATASETS, this file in the working directory, if it exists.
DATASETS_FILE = "chute.toml"

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Config:
    amqp_url: str
    database_url: str
    data_dir: Path
    namespace: str
    table: str
    api_host: str
    api_port: int
    api_token: str | None
    batch_size: int
    prefetch: int
    log_level: str
    metrics_port: int | None
    datasets: Datasets
    # Where the API reads: a streaming standby, or (empty) the database itself.
    api_database_url: str = ""
    # Symbolic links in the inbox are followed only to files under these folders
    # (CHUTE_FOLLOW_LINKS_UNDER); none by default.
    follow_links_under: tuple[Path, ...] = ()
    # Datasets whose table start-up found it cannot bring in step with the declaration
    # (set by service.start): their files wait for `chute rebuild`, the others run.
    held: frozenset[str] = frozenset()
    max_decompressed_bytes: int = int(DEFAULTS["CHUTE_MAX_DECOMPRESSED_BYTES"])
    max_compression_ratio: int = int(DEFAULTS["CHUTE_MAX_COMPRESSION_RATIO"])
    range_bytes: int = int(DEFAULTS["CHUTE_RANGE_BYTES"])
    # The console's actions (a retry) need this token; unset, they are off (CHUTE_ADMIN_TOKEN).
    admin_token: str | None = None

    @property
    def amqp_nodes(self) -> tuple[str, ...]:
        """The broker nodes' URLs, in the order services try them."""
        return amqp_nodes(self.amqp_url)

    @property
    def read_url(self) -> str:
        """The database the API reads: CHUTE_API_DATABASE_URL, else CHUTE_DATABASE_URL."""
        return self.api_database_url or self.database_url

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")

    @property
    def reader_role(self) -> str:
        """The read-only role the API uses; one per database, so test databases never share it."""
        return f"{self.database_name}_reader"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            value = env.get(name, "").strip()
            return value or DEFAULTS.get(name, "")

        api_host, api_port, api_token = api_address(env)
        metrics = get("CHUTE_METRICS_PORT")
        table = _match("CHUTE_TABLE", get("CHUTE_TABLE"), _TABLE, "a lower-case SQL identifier")
        database_url = _database_url("CHUTE_DATABASE_URL", get("CHUTE_DATABASE_URL"))
        api_database_url = get("CHUTE_API_DATABASE_URL")
        if api_database_url:
            _standby_url(api_database_url, database_url)
        amqp_url = get("CHUTE_AMQP_URL")
        amqp_nodes(amqp_url)  # validates every node's URL
        return cls(
            amqp_url=amqp_url,
            database_url=database_url,
            data_dir=Path(get("CHUTE_DATA_DIR")).resolve(),
            namespace=_match(
                "CHUTE_NAMESPACE",
                get("CHUTE_NAMESPACE"),
                _NAMESPACE,
                "letters, digits, '_', '.', '-'",
            ),
            table=table,
            api_host=api_host,
            api_port=api_port,
            api_token=api_token,
            admin_token=_admin_token(env.get("CHUTE_ADMIN_TOKEN", "").strip() or None,
                                     api_token),
            batch_size=_integer("CHUTE_BATCH_SIZE", get("CHUTE_BATCH_SIZE"), 1, 1_000_000),
            prefetch=_integer("CHUTE_PREFETCH", get("CHUTE_PREFETCH"), 1, 1000),
            log_level=_level(get("CHUTE_LOG_LEVEL")),
            metrics_port=_integer("CHUTE_METRICS_PORT", metrics, 0, 65535) if metrics else None,
            datasets=_datasets(get("CHUTE_DATASETS"), table),
            api_database_url=api_database_url,
            follow_links_under=_folders("CHUTE_FOLLOW_LINKS_UNDER",
                                        get("CHUTE_FOLLOW_LINKS_UNDER")),
            max_decompressed_bytes=_integer("CHUTE_MAX_DECOMPRESSED_BYTES",
                                            get("CHUTE_MAX_DECOMPRESSED_BYTES"), 1 << 20,
                                            1 << 50),
            max_compression_ratio=_integer("CHUTE_MAX_COMPRESSION_RATIO",
                                           get("CHUTE_MAX_COMPRESSION_RATIO"), 2, 1_000_000),
            range_bytes=_integer("CHUTE_RANGE_BYTES", get("CHUTE_RANGE_BYTES"), 0, 1 << 40),
        )


def _folders(name: str, value: str) -> tuple[Path, ...]:
    """Folders separated by ':' (as in PATH), each one that exists, resolved."""
    folders = []
    for part in filter(None, value.split(os.pathsep)):
        folder = Path(part)
        if not folder.is_absolute() or not folder.is_dir():
            raise ConfigError(f"{name}: {part!r} is not an absolute path to a folder")
        folders.append(folder.resolve())
    return tuple(folders)


def _admin_token(token: str | None, api_token: str | None) -> str | None:
    """A separate secret: whoever may read (the API token) must not thereby act."""
    if token is not None and token == api_token:
        raise ConfigError("CHUTE_ADMIN_TOKEN must differ from CHUTE_API_TOKEN: reading and "
                          "acting are granted apart")
    return token


def api_address(env: Mapping[str, str] | None = None) -> tuple[str, int, str | None]:
    """Where the API listens and its token, from CHUTE_API_HOST, CHUTE_API_PORT and
    CHUTE_API_TOKEN alone: what a client of the API (`chute status`) needs, without the
    datasets or the URLs of the database and the broker."""
    env = os.environ if env is None else env
    host = env.get("CHUTE_API_HOST", "").strip() or DEFAULTS["CHUTE_API_HOST"]
    port = env.get("CHUTE_API_PORT", "").strip() or DEFAULTS["CHUTE_API_PORT"]
    return (host, _integer("CHUTE_API_PORT", port, 1, 65535),
            env.get("CHUTE_API_TOKEN", "").strip() or None)


def _datasets(value: str, people_table: str) -> Datasets:
    """The declared datasets; the built-in people alone without a file."""
    from chute.datasets.declarations import load as load_datasets

    if value:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"CHUTE_DATASETS: no such file: {value}")
    else:
        path = Path(DATASETS_FILE)
        if not path.is_file():
            path = None
    try:
        return load_datasets(path, people_table)
    except DatasetsError as e:
        raise ConfigError(str(e)) from None


def amqp_nodes(value: str) -> tuple[str, ...]:
    """CHUTE_AMQP_URL as a list of node URLs: one URL, or several nodes of one cluster
    separated by commas (a comma inside a password is written %2C, as URLs need anyway).
    """
    nodes = tuple(part.strip() for part in value.split(","))
    for number, node in enumerate(nodes, 1):
        if not node:
            raise ConfigError(f"CHUTE_AMQP_URL: node {number} of {len(nodes)} is empty "
                              "(a stray comma?)")
        name = "CHUTE_AMQP_URL" if len(nodes) == 1 else f"CHUTE_AMQP_URL (node {number})"
        _url(name, node, ("amqp", "amqps"))
    return nodes


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{name} must be a {' or '.join(schemes)}:// URL with a host")
    return value


def _database_url(variable: str, value: str) -> str:
    _url(variable, value, ("postgresql", "postgres"))
    name = urlsplit(value).path.lstrip("/")
    if not _TABLE.fullmatch(name):
        raise ConfigError(
            f"{variable} must name a database (lower-case letters, digits, '_')"
        )
    return value


def _standby_url(value: str, database_url: str) -> str:
    """A standby is a copy of the whole server: the same database, and the same reader
    role (created on the primary and replicated), so the names must agree."""
    _database_url("CHUTE_API_DATABASE_URL", value)
    name, expected = (urlsplit(u).path.lstrip("/") for u in (value, database_url))
    if name != expected:
        raise ConfigError(f"CHUTE_API_DATABASE_URL must name the same database as "
                          f"CHUTE_DATABASE_URL ({expected!r}), got {name!r}")
    return value


def _match(name: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return value


def _integer(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _level(value: str) -> str:
    level = value.upper()
    if level not in _LEVELS:
        raise ConfigError(f"CHUTE_LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {value!r}")
    return level
