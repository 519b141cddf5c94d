"""The loader: RowBatch and FileDone messages -> PostgreSQL, with the batch ledger."""

import logging

from chute import db, metrics
from chute.broker import BATCHES, DEAD_NOTIFY, Broker
from chute.service import Stop, load_config, prepare_database, run_with_reconnect
from loader.handle import BatchHandler

log = logging.getLogger("loader")


def main() -> None:
    stop = Stop()
    stop.install()  # first: a SIGTERM during start-up must also stop us cleanly
    config = load_config("loader")
    metrics.serve(config.metrics_port)
    prepare_database(config, stop)

    def session() -> None:
        # The database first: while it is down, no message is taken from the broker
        # (taking and returning one would count as a delivery).
        conn = db.connect(config.database_url)
        try:
            broker = Broker(config.amqp_url, config.namespace)
            try:
                handler = BatchHandler(config, conn, broker)
                broker.consume(BATCHES, config.prefetch, handler.on_batch)
                broker.consume(DEAD_NOTIFY, config.prefetch, handler.on_dead_letter)
                log.info("consuming", extra={"queues": [BATCHES, DEAD_NOTIFY],
                                             "prefetch": config.prefetch})
                broker.run_until(stop)
            finally:
                broker.close()  # unacknowledged messages go back to their queue
        finally:
            conn.close()

    run_with_reconnect(session, stop)


if __name__ == "__main__":
    main()
