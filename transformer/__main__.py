from chute import db
from chute.broker import FILES, Broker
from chute.service import Stop, load_config, prepare_database, run_with_reconnect
from transformer.handle import FileHandler, Interrupted


def main() -> None:
    config = load_config("transformer")
    stop = Stop()
    stop.install()
    prepare_database(config, stop)

    def session() -> None:
        conn = db.connect(config.database_url)
        broker = Broker(config.amqp_url, config.namespace)
        try:
            # One file at a time per transformer, so competing transformers share files.
            broker.consume(FILES, 1, FileHandler(config, conn, broker, stop).on_file_arrived)
            broker.run_until(stop)
        except Interrupted:
            pass  # closing the connection below hands the event back to the queue
        finally:
            broker.close()
            conn.close()

    run_with_reconnect(session, stop)


if __name__ == "__main__":
    main()
