"""The transformer: FileArrived -> cleaned RowBatch messages and a FileDone."""

import logging

from chute import db
from chute.broker import FILES, Broker
from chute.service import run_consumer, start
from transformer.handle import FileHandler

log = logging.getLogger("transformer")


def main() -> None:
    config, stop = start("transformer")

    def subscribe(conn: db.Connection, broker: Broker) -> None:
        # One file at a time per transformer, so competing transformers share files.
        broker.consume(FILES, 1, FileHandler(config, conn, broker, stop).on_file_arrived)
        log.info("consuming", extra={"queues": [FILES], "prefetch": 1})

    run_consumer(config, stop, subscribe)


if __name__ == "__main__":
    main()
