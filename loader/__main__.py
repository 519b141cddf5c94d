"""The loader: RowBatch and FileDone messages -> PostgreSQL, with the batch ledger."""

import logging
from collections.abc import Callable

from chute.postgres import db
from chute.rabbitmq.broker import BATCHES, DEAD_NOTIFY, Broker
from chute.runtime.service import run_consumer, start
from loader.handle import BatchHandler

log = logging.getLogger("loader")


def main() -> None:
    config, stop = start("loader")

    def subscribe(conn: db.Connection, broker: Broker) -> Callable[[], None]:
        handler = BatchHandler(config, conn, broker)
        broker.consume(BATCHES, config.prefetch, handler.on_batch)
        broker.consume(DEAD_NOTIFY, config.prefetch, handler.on_dead_letter)
        log.info("consuming", extra={"queues": [BATCHES, DEAD_NOTIFY],
                                     "prefetch": config.prefetch})
        return handler.handle_pending

    run_consumer(config, stop, subscribe)


if __name__ == "__main__":
    main()
