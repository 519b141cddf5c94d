from chute.service import start
from watcher.watch import run


def main() -> None:
    run(*start("watcher"))


if __name__ == "__main__":
    main()
