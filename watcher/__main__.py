from chute import metrics
from chute.service import Stop, load_config, prepare_database
from watcher.watch import run


def main() -> None:
    stop = Stop()
    stop.install()  # first: a SIGTERM during start-up must also stop us cleanly
    config = load_config("watcher")
    metrics.serve(config.metrics_port)
    prepare_database(config, stop)
    run(config, stop)


if __name__ == "__main__":
    main()
