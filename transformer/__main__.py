"""The transformer: FileArrived -> cleaned RowBatch messages and a FileDone."""

import logging
from collections.abc import Callable

from chute.postgres import db
from chute.rabbitmq.broker import FILES, RANGES, Broker
from chute.runtime.service import run_consumer, start
from transformer.handle import FileHandler
from transformer.ranges import RangeHandler

log = logging.getLogger("transformer")

# Files in a transformer's hands at once: a group of small files is claimed with one
# commit and sent with one wait for the broker's confirms (FileHandler.handle_pending).
# Measured on a burst of 1,000 small files: 1 -> 74 files/s, 4 -> 103, 8 -> 118. Few,
# so that competing transformers still share a queue of large files.
PREFETCH = 8


def main() -> None:
    config, stop = start("transformer")

    def subscribe(conn: db.Connection, broker: Broker) -> Callable[[], None]:
        handler = FileHandler(config, conn, broker, stop)
        ranges = RangeHandler(config, conn, broker)
        broker.consume(FILES, PREFETCH, handler.on_file_arrived)
        # One range at a time: the others stay for the other transformers.
        broker.consume(RANGES, 1, ranges.on_range)
        log.info("consuming", extra={"queues": [FILES, RANGES], "prefetch": PREFETCH})

        def after_poll() -> None:
            handler.handle_pending()
            ranges.handle_pending()

        return after_poll

    run_consumer(config, stop, subscribe)


if __name__ == "__main__":
    main()
