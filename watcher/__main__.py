from chute.service import Stop, load_config, prepare_database
from watcher.watch import run


def main() -> None:
    config = load_config("watcher")
    stop = Stop()
    stop.install()
    prepare_database(config, stop)
    run(config, stop)


if __name__ == "__main__":
    main()
