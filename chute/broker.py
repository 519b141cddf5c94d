"""RabbitMQ: the only module that imports pika.

Topology, all names prefixed by the namespace:
    {ns}.events       direct exchange; routing keys "files" and "batches"
    {ns}.files        quorum queue of FileArrived
    {ns}.batches      quorum queue of RowBatch and FileDone
    {ns}.dead-letter  fanout exchange that both queues dead-letter into
    {ns}.dead         quorum queue: dead-lettered messages, kept for people to read
    {ns}.dead.notify  quorum queue: the same messages, consumed by the loader to mark
                      their file failed

Every publish waits for the broker's confirm: a message is not sent until confirmed.
pika errors become BrokerUnavailable at this edge, so callers know one exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

log = logging.getLogger(__name__)

# Deliveries before the broker dead-letters a message. RabbitMQ 3.x also counts a
# delivery returned because its consumer died, so this must stay well above the number
# of worker crashes one message may live through.
DELIVERY_LIMIT = 20

FILES = "files"
BATCHES = "batches"
DEAD = "dead"
DEAD_NOTIFY = "dead.notify"


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached or dropped us; retrying later may work."""


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer, with what it needs to settle it."""

    tag: int
    headers: dict[str, Any]
    body: bytes
    redelivered: bool

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this message (quorum queues set x-delivery-count)."""
        return int(self.headers.get("x-delivery-count", 0) or 0)


def queue_name(namespace: str, queue: str) -> str:
    return f"{namespace}.{queue}"


class Broker:
    """One blocking connection and channel, in confirm mode."""

    def __init__(self, url: str, namespace: str) -> None:
        self.namespace = namespace
        self.exchange = f"{namespace}.events"
        self.dead_letter_exchange = f"{namespace}.dead-letter"
        params = pika.URLParameters(url)
        params.heartbeat = 60
        params.blocked_connection_timeout = 300
        params.connection_attempts = 1
        params.socket_timeout = 5
        try:
            self.connection = pika.BlockingConnection(params)
            self.channel: BlockingChannel = self.connection.channel()
            self.channel.confirm_delivery()
            self._declare()
        except pika.exceptions.AMQPError as e:
            raise BrokerUnavailable(f"broker: {e!r}") from None

    def _declare(self) -> None:
        ch = self.channel
        ch.exchange_declare(self.exchange, "direct", durable=True)
        ch.exchange_declare(self.dead_letter_exchange, "fanout", durable=True)
        work_args = {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }
        for key in (FILES, BATCHES):
            name = queue_name(self.namespace, key)
            ch.queue_declare(name, durable=True, arguments=work_args)
            ch.queue_bind(name, self.exchange, routing_key=key)
        for key in (DEAD, DEAD_NOTIFY):
            name = queue_name(self.namespace, key)
            ch.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
            ch.queue_bind(name, self.dead_letter_exchange)

    def publish(self, routing_key: str, headers: dict[str, Any], body: bytes) -> None:
        """Publish persistently and return once the broker has confirmed it."""
        props = pika.BasicProperties(delivery_mode=2, headers=headers)
        try:
            self.channel.basic_publish(
                self.exchange, routing_key, body, properties=props, mandatory=True
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
            raise BrokerUnavailable(f"broker refused a message: {e!r}") from None
        except pika.exceptions.AMQPError as e:
            raise BrokerUnavailable(f"broker: {e!r}") from None

    def consume(self, queue: str, prefetch: int, handler: Callable[[Delivery], None]) -> None:
        """Register `handler` for `queue`; it runs inside `run_until`."""

        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            handler(Delivery(method.delivery_tag, dict(props.headers or {}), body,
                             method.redelivered))

        try:
            self.channel.basic_qos(prefetch_count=prefetch)
            self.channel.basic_consume(queue_name(self.namespace, queue), on_message)
        except pika.exceptions.AMQPError as e:
            raise BrokerUnavailable(f"broker: {e!r}") from None

    def run_until(self, stopping: Callable[[], bool]) -> None:
        """Dispatch deliveries until `stopping()`; the message in hand always finishes."""
        while not stopping():
            self.poll(0.5)

    def poll(self, seconds: float) -> None:
        """Serve the connection (heartbeats, deliveries) for up to `seconds`."""
        try:
            self.connection.process_data_events(time_limit=seconds)
        except pika.exceptions.AMQPError as e:
            raise BrokerUnavailable(f"broker: {e!r}") from None

    def ack(self, delivery: Delivery) -> None:
        self._settle(lambda: self.channel.basic_ack(delivery.tag))

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        """requeue=False sends the message to the dead-letter queue."""
        self._settle(lambda: self.channel.basic_nack(delivery.tag, requeue=requeue))

    def _settle(self, settle: Callable[[], None]) -> None:
        try:
            settle()
        except pika.exceptions.AMQPError as e:
            raise BrokerUnavailable(f"broker: {e!r}") from None

    def close(self) -> None:
        """Close quietly: unacknowledged messages go back to their queue."""
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
            pass


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when the broker completes a handshake within `timeout` seconds."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.stack_timeout = timeout
    try:
        pika.BlockingConnection(params).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


def delete_namespace(url: str, namespace: str) -> None:
    """Remove every queue and exchange of a namespace (tests clean up with this)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for queue in (FILES, BATCHES, DEAD, DEAD_NOTIFY):
            ch.queue_delete(queue_name(namespace, queue))
        for exchange in ("events", "dead-letter"):
            ch.exchange_delete(f"{namespace}.{exchange}")
    finally:
        conn.close()
