import asyncio

import asyncpg
from aiohttp import web

from api.app import create_app
from api.queries import schema_replayed
from chute.errors import DatabaseUnavailable
from chute.runtime.config import Config
from chute.runtime.service import Stop, load_config, prepare_database, run_with_reconnect


def main() -> None:
    config = load_config("api")
    stop = Stop()
    stop.install()
    prepare_database(config, stop, "api")  # on CHUTE_DATABASE_URL, never on a standby
    if config.read_url != config.database_url:
        run_with_reconnect(lambda: _wait_for_replay(config), stop, once=True)
    if stop():
        return
    # aiohttp installs its own SIGTERM/SIGINT handling and shuts down cleanly (exit 0).
    web.run_app(create_app(config), host=config.api_host, port=config.api_port,
                access_log=None, print=None, handle_signals=True)


def _wait_for_replay(config: Config) -> None:
    """Serve from the standby only once it has the schema the primary was given."""
    try:
        replayed = asyncio.run(schema_replayed(config))
    except (OSError, asyncpg.PostgresError) as e:  # TimeoutError is an OSError
        raise DatabaseUnavailable(f"standby: {e!r}") from None
    if not replayed:
        raise DatabaseUnavailable("standby: the schema has not been replayed yet")


if __name__ == "__main__":
    main()
