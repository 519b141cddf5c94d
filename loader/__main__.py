from chute import db
from chute.broker import BATCHES, DEAD_NOTIFY, Broker
from chute.service import Stop, load_config, prepare_database, run_with_reconnect
from loader.handle import BatchHandler


def main() -> None:
    config = load_config("loader")
    stop = Stop()
    stop.install()
    prepare_database(config, stop)

    def session() -> None:
        conn = db.connect(config.database_url)
        broker = Broker(config.amqp_url, config.namespace)
        try:
            handler = BatchHandler(config, conn, broker)
            broker.consume(BATCHES, config.prefetch, handler.on_batch)
            broker.consume(DEAD_NOTIFY, config.prefetch, handler.on_dead_letter)
            broker.run_until(stop)
        finally:
            broker.close()
            conn.close()

    run_with_reconnect(session, stop)


if __name__ == "__main__":
    main()
