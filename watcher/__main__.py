from chute.errors import DataFolderUnusable
from chute.runtime.service import cannot_work, start
from watcher.watch import run


def main() -> None:
    config, stop = start("watcher")
    try:
        run(config, stop)
    except DataFolderUnusable as e:  # it became unwritable while we ran
        cannot_work(config, stop, "watcher", str(e))


if __name__ == "__main__":
    main()
