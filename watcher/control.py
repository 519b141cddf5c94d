"""The console's actions, carried out by the watcher: it owns the data folder and writes
the ledger, which the API's read-only role cannot (see docs/console.md).

A request is handled at most once in effect, whatever happens: one that cannot be
decoded, or names a file that is not retryable, is logged with the reason and dropped
(acked); it never stops the watcher. Only an outage of the database or the broker
leaves it unacknowledged, to be delivered again once the watcher has reconnected; a
retry cut short by that outage is finished by the watcher's repair of work/ (the file
is `received` there), and the request delivered again is then refused as not retryable.
"""

from __future__ import annotations

import logging

from chute.commands.retry import retry_file
from chute.errors import BrokerUnavailable, DatabaseUnavailable, MessageDecodeError, RetryError
from chute.rabbitmq.broker import Broker, Delivery
from chute.rabbitmq.messages import RetryRequested
from chute.runtime.config import Config

log = logging.getLogger(__name__)


def handle_control(config: Config, broker: Broker, delivery: Delivery) -> None:
    """pika calls this (through Broker.consume, in the watcher's thread) for each message
    of {ns}.control."""
    try:
        request = RetryRequested.decode(delivery.headers, delivery.body)
    except MessageDecodeError as e:
        log.warning("console action dropped: not a request", extra={"reason": str(e)})
        broker.ack(delivery)
        return
    context = {"action": "retry", "file_id": request.file_id,
               "requested_at": request.requested_at}
    try:
        name = retry_file(config, request.file_id)
    except RetryError as e:
        log.warning("console action refused", extra={**context, "reason": str(e)})
    except (BrokerUnavailable, DatabaseUnavailable):
        raise  # unacknowledged: delivered again after the reconnect
    except Exception as e:  # noqa: BLE001 - one bad request must never stop the watcher
        log.exception("console action failed", extra={**context, "reason": repr(e)})
    else:
        log.info("console action done: file sent round again", extra={**context, "file_name": name})
    broker.ack(delivery)
