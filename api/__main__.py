from aiohttp import web

from api.app import create_app
from chute.service import Stop, load_config, prepare_database


def main() -> None:
    config = load_config("api")
    stop = Stop()
    stop.install()
    prepare_database(config, stop)
    if stop():
        return
    # aiohttp installs its own SIGTERM/SIGINT handling and shuts down cleanly (exit 0).
    web.run_app(create_app(config), host=config.api_host, port=config.api_port,
                access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
