"""The transformer: FileArrived -> cleaned RowBatch messages and a FileDone."""

import logging

from chute import db, metrics
from chute.broker import FILES, Broker
from chute.service import Stop, load_config, prepare_database, run_with_reconnect
from transformer.handle import FileHandler, Interrupted

log = logging.getLogger("transformer")


def main() -> None:
    stop = Stop()
    stop.install()  # first: a SIGTERM during start-up must also stop us cleanly
    config = load_config("transformer")
    metrics.serve(config.metrics_port)
    prepare_database(config, stop)

    def session() -> None:
        # The database first: while it is down, no event is taken from the broker
        # (taking and returning one would count as a delivery).
        conn = db.connect(config.database_url)
        try:
            broker = Broker(config.amqp_url, config.namespace)
            try:
                # One file at a time per transformer, so competing transformers share files.
                broker.consume(FILES, 1, FileHandler(config, conn, broker, stop).on_file_arrived)
                log.info("consuming", extra={"queues": [FILES], "prefetch": 1})
                broker.run_until(stop)
            except Interrupted:
                pass  # closing the connection below hands the event back to the queue
            finally:
                broker.close()
        finally:
            conn.close()

    run_with_reconnect(session, stop)


if __name__ == "__main__":
    main()
