"""RabbitMQ: the only module that imports pika.

Topology, all names prefixed by the namespace:
    {ns}.events       direct exchange; routing keys "files" and "batches"
    {ns}.files        quorum queue of FileArrived
    {ns}.batches      quorum queue of RowBatch and FileDone
    {ns}.dead-letter  fanout exchange that both queues dead-letter into
    {ns}.dead         quorum queue: dead-lettered messages, kept for people to read
    {ns}.dead.notify  quorum queue: the same messages, consumed by the loader to mark
                      their file failed
    {ns}.control      quorum queue, routing key "control": the console's actions (a
                      retry), consumed by the watcher; no dead-lettering, so a control
                      message never reaches {ns}.dead.notify and fails a file

The broker may be a cluster: the URL is a comma-separated list of its nodes. A service
connects to the first node that answers and, once that connection is lost, starts from
the next one. Quorum queues are replicated over up to 3 nodes (the broker's default
quorum_cluster_size; see docs/cluster.md), so they survive the loss of one node.
A queue that an earlier chute made with other arguments, such as a classic queue, is
used as it is, with a warning (see Broker._declare_queue).

Every publish waits for the broker's confirm: a message is not sent until confirmed.
While the broker blocks publishing (a memory or disk alarm), a publish waits for as long
as the alarm lasts, and the worker says so (chute.runtime.health; see
Broker._on_connection_blocked).
Dead-lettering is at-least-once too: the work queue keeps a message until both dead
queues have confirmed it. Every pika error becomes BrokerUnavailable at this edge, so
callers know one exception and the retry policy (chute.runtime.service) handles all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pika
import pika.exceptions
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from chute.errors import BrokerUnavailable
from chute.runtime import health, metrics
from chute.runtime.config import amqp_nodes
from chute.runtime.health import HEALTH, WAITING

log = logging.getLogger(__name__)

T = TypeVar("T")

# Deliveries before the broker dead-letters a message. RabbitMQ 3.x counts every return,
# including the unacknowledged messages of a consumer that died or lost its connection
# (measured on 3.10: a closed channel or connection adds one to x-delivery-count). So
# this is the safety net for a message that kills its worker, and must stay well above
# the crashes and outages one message may live through; failures a handler sees are
# counted apart (Delivery.failures), so outages never burn a handler's retries.
DELIVERY_LIMIT = 20
# {ns}.dead is read by fetching a message and handing it back, which a quorum queue
# counts as a delivery; RabbitMQ 4 gives every quorum queue a default limit of 20, and
# this queue has nowhere to dead-letter to. A limit no reader reaches keeps every message.
DEAD_READ_LIMIT = 1_000_000_000
HEARTBEAT_SECONDS = 60
# How often keep_alive_during serves the connection: well within any heartbeat a URL
# may ask for, and cheap (one poll of the socket).
SERVE_EVERY_SECONDS = 0.5
# chute.runtime.health's topic for a broker that blocks our publishes (its memory or disk alarm).
ALARM_TOPIC = "broker alarm"

FILES = "files"
RANGES = "ranges"  # ranges of large files (chute.reading.ranges), one at a time each
BATCHES = "batches"
DEAD = "dead"
DEAD_NOTIFY = "dead.notify"
CONTROL = "control"
FAILURES_HEADER = "failures"  # handler failures so far; see Broker.retry_later
# Headers the broker adds on redelivery and dead-lettering; a retried copy starts clean.
_BROKER_HEADERS = frozenset({"x-delivery-count", "x-death", "x-first-death-exchange",
                             "x-first-death-queue", "x-first-death-reason"})

# What pika raises when the broker goes away or refuses us. Not OSError: pika wraps
# socket errors itself, and an OSError escaping process_data_events comes from a
# handler (including our own DatabaseUnavailable), which must pass through unchanged.
_LOST = (pika.exceptions.AMQPError, pika.exceptions.ChannelError)


@contextmanager
def _lost_is_unavailable() -> Iterator[None]:
    """pika's many ways of saying "the connection or channel is gone" become the one
    exception callers know, at this edge."""
    try:
        yield
    except _LOST as e:
        raise BrokerUnavailable(f"broker: {e!r}") from None


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer, with what it needs to settle it."""

    tag: int
    headers: dict[str, Any]
    body: bytes
    redelivered: bool
    queue: str = ""  # FILES or BATCHES: where retry_later puts it back

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this message (quorum queues set x-delivery-count).

        Crashes and outages count here too: use `failures` to decide about retries.
        """
        return int(self.headers.get("x-delivery-count", 0) or 0)

    @property
    def failures(self) -> int:
        """How many times a handler failed on this message (see Broker.retry_later)."""
        return _failures(self.headers)


def _failures(headers: dict[str, Any]) -> int:
    try:
        return max(0, int(headers.get(FAILURES_HEADER, 0) or 0))
    except (TypeError, ValueError):
        return 0


def queue_name(namespace: str, queue: str) -> str:
    return f"{namespace}.{queue}"


def _node_parameters(url: str, timeout: float) -> list[pika.URLParameters]:
    """pika's parameters for each node of CHUTE_AMQP_URL, one attempt each: the next
    node is the retry."""
    nodes = []
    for node in amqp_nodes(url):
        params = pika.URLParameters(node)
        params.connection_attempts = 1
        params.socket_timeout = timeout
        params.stack_timeout = 2 * timeout
        nodes.append(params)
    return nodes


# Per process and per URL list: the node to try first. It moves on past a node whose
# connection was lost, so a reconnect does not wait on the node that just went away
# (on a real network a dead host costs a connect timeout, not a refusal).
_first_node: dict[str, int] = {}


class Broker:
    """One blocking connection and channel, in confirm mode."""

    def __init__(self, url: str, namespace: str) -> None:
        self.namespace = namespace
        self.exchange = f"{namespace}.events"
        self.dead_letter_exchange = f"{namespace}.dead-letter"
        self._stopping: Callable[[], bool] = lambda: False
        self._consumers = 0
        self._helper: ThreadPoolExecutor | None = None  # see keep_alive_during
        self._pipe: _Pipeline | None = None  # see publish_many
        self._url = url
        self._node = 0
        # Queues used as they were found (see _declare_queue): their own dead-lettering
        # is not relied on.
        self._found_as_is: set[str] = set()
        # Delivery tags received on the channel and not yet settled (see ack_all).
        self._unsettled: set[int] = set()
        # While the broker blocks publishing: the timer that renews the report.
        self._alarm_renewal: object | None = None
        self._alarm_text = ""
        nodes = _node_parameters(url, 5)
        for node, params in zip(amqp_nodes(url), nodes, strict=True):
            if "heartbeat" not in urlsplit(node).query:  # CHUTE_AMQP_URL may set its own
                params.heartbeat = HEARTBEAT_SECONDS
            # No blocked_connection_timeout: a publish the broker blocks waits for as long
            # as the alarm lasts. Giving up would not help: RabbitMQ's memory and disk
            # alarms block publishers on every node of a cluster, so a new connection is
            # blocked again, and each new session hands the message in hand back to its
            # queue, which counts as a delivery: after DELIVERY_LIMIT of them a file would
            # be dead-lettered for the broker's trouble. A blocked connection is not a
            # dead one: the broker goes on sending heartbeats, so a broker that dies is
            # still noticed.
        first = _first_node.get(url, 0) % len(nodes)
        order = nodes[first:] + nodes[:first]
        self.connection: pika.BlockingConnection | None = None
        try:
            self.connection = pika.BlockingConnection(order)
            # Which node answered: pika keeps a copy of its parameters, equal by host and port.
            self._node = nodes.index(self.connection._impl.params)
            # On pika's connection underneath, not on the BlockingConnection: a
            # BlockingConnection runs these callbacks only once a blocking call returns,
            # and a blocked publish returns only when the alarm is over (measured, pika
            # 1.3.2 and RabbitMQ 3.10: both callbacks came together, after the unblock).
            self.connection._impl.add_on_connection_blocked_callback(
                self._on_connection_blocked)
            self.connection._impl.add_on_connection_unblocked_callback(
                self._on_connection_unblocked)
            self.channel: BlockingChannel = self.connection.channel()
            self.channel.confirm_delivery()
            self._declare()
        except (*_LOST, OSError) as e:  # OSError: a DNS failure while connecting
            self.close()  # a half-open connection must not linger until the next session
            raise BrokerUnavailable(f"broker: {e!r}") from None
        _first_node[url] = self._node
        if len(nodes) > 1:
            log.info("broker connected", extra={"node": self._node + 1, "nodes": len(nodes)})
        metrics.CONNECTED.labels("broker").set(1)

    def _declare(self) -> None:
        ch = self.channel
        ch.exchange_declare(self.exchange, "direct", durable=True)
        ch.exchange_declare(self.dead_letter_exchange, "fanout", durable=True)
        work_args = {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            # At-least-once dead-lettering: the default (at-most-once) drops a message
            # dead-lettered while a dead queue cannot take it. It requires reject-publish
            # overflow; no length limit is set, so that never rejects anything.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        for key in (FILES, RANGES, BATCHES):
            name = queue_name(self.namespace, key)
            self._declare_queue(name, work_args)
            self.channel.queue_bind(name, self.exchange, routing_key=key)
        # The delivery limit stops a request that kills its worker from looping; past
        # it the broker drops the request (a person can click again).
        control = queue_name(self.namespace, CONTROL)
        self._declare_queue(control, {"x-queue-type": "quorum",
                                      "x-delivery-limit": DELIVERY_LIMIT})
        self.channel.queue_bind(control, self.exchange, routing_key=CONTROL)
        dead_arguments = {
            DEAD: {"x-queue-type": "quorum", "x-delivery-limit": DEAD_READ_LIMIT},
            DEAD_NOTIFY: {"x-queue-type": "quorum"},
        }
        for key, arguments in dead_arguments.items():
            name = queue_name(self.namespace, key)
            if self._declare_queue(name, arguments):
                self.channel.queue_bind(name, self.dead_letter_exchange)

    def _declare_queue(self, name: str, arguments: dict[str, Any]) -> bool:
        """Declare a durable queue; False if it exists but is out of reach right now.

        A queue that exists with other arguments is used as it is, with a warning,
        rather than refused forever: RabbitMQ cannot change a queue's type or arguments
        in place, and deleting a queue that holds messages would lose them. Typically a
        classic queue made by an earlier chute (the dead queue was classic before
        clusters): it works on one node but is not replicated, and its own
        dead-lettering is not relied on (see reject). docs/cluster.md says how to
        migrate it. A classic queue whose node is down cannot even be declared; for a
        dead queue that is survivable (dead-lettering is at-least-once: messages wait
        in their work queue until it is back), so the service goes on without it.
        """
        try:
            self.channel.queue_declare(name, durable=True, arguments=arguments)
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code not in (404, 406):
                raise
            self._reopen_channel()  # the broker closed the channel
            if e.reply_code == 404:  # a classic queue whose node is down
                return self._queue_out_of_reach(name, e)
            # The broker names only the first argument that differs, so the reply does
            # not tell a classic queue apart; the error is logged as it is.
            log.warning("queue exists with other arguments (a classic queue of an earlier "
                        "chute?): using it as it is; see 'Migrating queues' in "
                        "docs/cluster.md", extra={"queue": name, "error": e.reply_text})
            self._found_as_is.add(name)
        try:
            self.channel.queue_declare(name, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
            self._reopen_channel()
            return self._queue_out_of_reach(name, e)

    def _queue_out_of_reach(self, name: str, error: pika.exceptions.ChannelClosedByBroker
                            ) -> bool:
        if name not in (queue_name(self.namespace, DEAD),
                        queue_name(self.namespace, DEAD_NOTIFY)):
            raise error  # a work queue: nothing can be done without it
        log.warning("dead queue out of reach (its node is down?): dead letters wait in "
                    "their work queue until it is back",
                    extra={"queue": name, "error": error.reply_text})
        return False

    def _reopen_channel(self) -> None:
        self._unsettled.clear()  # tags belong to a channel
        self.channel = self._open().channel()
        self.channel.confirm_delivery()

    def publish(self, routing_key: str, headers: dict[str, Any], body: bytes) -> None:
        """Publish persistently and return once the broker has confirmed it."""
        props = pika.BasicProperties(delivery_mode=2, headers=headers)
        try:
            with _lost_is_unavailable():
                self.channel.basic_publish(
                    self.exchange, routing_key, body, properties=props, mandatory=True
                )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
            raise BrokerUnavailable(f"broker refused a message: {e!r}") from None

    def publish_many(self, messages: Sequence[tuple[str, dict[str, Any], bytes]]) -> None:
        """Publish (routing key, headers, body) messages persistently, all at once, and
        return once the broker has confirmed every one of them.

        One wait for many confirms: a quorum queue confirms after its log is synced, so
        waiting for each message in turn (`publish`) costs a sync per message, and a
        burst of small files is mostly that. pika's BlockingChannel waits after every
        publish in confirm mode, so this uses a second channel whose confirms it counts
        itself, through the channel's asynchronous core (pika is pinned: see
        pyproject.toml). Any nack, return or loss raises BrokerUnavailable: the caller
        has acknowledged nothing yet, and every message is safe to send again.
        """
        if not messages:
            return
        with _lost_is_unavailable():
            pipe = self._pipeline()
            for routing_key, headers, body in messages:
                props = pika.BasicProperties(delivery_mode=2, headers=headers)
                pipe.channel._impl.basic_publish(self.exchange, routing_key, body,
                                                 properties=props, mandatory=True)
                pipe.sent += 1
            pipe.channel._flush_output(lambda: pipe.settled() or bool(pipe.refused))
        if pipe.refused:
            self._close_pipeline()  # its numbering is spoilt; the next call starts anew
            raise BrokerUnavailable(f"broker refused a message: {pipe.refused}")

    def _pipeline(self) -> _Pipeline:
        if self._pipe is None or not self._pipe.channel.is_open:
            self._pipe = _Pipeline(self._open().channel())
        return self._pipe

    def _close_pipeline(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None and pipe.channel.is_open:
            try:
                pipe.channel.close()
            except Exception:  # noqa: BLE001 - a broken channel may fail to close any way
                pass

    def consume(self, queue: str, prefetch: int, handler: Callable[[Delivery], None]) -> None:
        """Register `handler` for `queue`, at most `prefetch` unacknowledged at a time;
        it runs inside `run_until`."""

        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            self._unsettled.add(method.delivery_tag)
            if self._stopping():
                # Already prefetched but not started: closing the connection hands it
                # back to the queue. Stopping means nothing new starts.
                return
            delivery = Delivery(
                method.delivery_tag,
                dict(props.headers or {}),
                body,
                method.redelivered,
                queue,
            )
            handler(delivery)

        with _lost_is_unavailable():
            self.channel.basic_qos(prefetch_count=prefetch)
            self.channel.basic_consume(queue_name(self.namespace, queue), on_message)
        self._consumers += 1

    def run_until(self, stopping: Callable[[], bool],
                  after_poll: Callable[[], None] | None = None) -> None:
        """Dispatch deliveries until `stopping()`; the message in hand always finishes.
        `after_poll` runs after each round of deliveries (see transformer.handle)."""
        self._stopping = stopping
        while not stopping():
            self.poll(0.5)
            if after_poll is not None:
                after_poll()
            # pika drops a consumer the broker cancelled (its queue was deleted or moved)
            # without a word: without this check the worker would idle forever.
            if len(self.channel.consumer_tags) < self._consumers:
                raise BrokerUnavailable("broker cancelled a consumer")

    def poll(self, seconds: float) -> None:
        """Serve the connection (heartbeats, deliveries) for up to `seconds`."""
        with _lost_is_unavailable():
            self._open().process_data_events(time_limit=seconds)

    def keep_alive_during(self, work: Callable[[], T]) -> T:
        """Run `work` (blocking I/O elsewhere, such as a COPY) in a helper thread while
        this thread keeps serving the connection, and return its result or raise its error.

        A callback that blocks for about two heartbeat intervals gets its connection
        closed by the broker (measured on RabbitMQ 3.10: heartbeat 2 s, a 10 s callback,
        connection reset), which would redeliver a batch that was in fact loaded. pika
        allows serving I/O from inside a callback; it only refuses to dispatch further
        deliveries there.
        """
        if self._helper is None:
            # One thread for the connection's life: a new thread per call cost a small
            # file's loader about a sixth of its CPU.
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chute-work")
        future = self._helper.submit(work)
        try:
            while not wait([future], timeout=SERVE_EVERY_SECONDS).done:
                self.poll(0)
        except BaseException:
            # On a lost broker, wait for the work to finish, so the database connection
            # is never shared; its effect is idempotent, and the message will be
            # redelivered.
            wait([future])
            raise
        return future.result()

    def pause(self, seconds: float) -> None:
        """Wait without starving heartbeats (safe inside a callback)."""
        with _lost_is_unavailable():
            self._open().sleep(seconds)

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery.tag, lambda: self.channel.basic_ack(delivery.tag))

    def ack_all(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge several deliveries: with one ack (`multiple`) when they are all
        the deliveries still unsettled up to the last of them, else one by one.

        For a burst of small files one frame instead of one per file, and for a quorum
        queue one settle command in its log instead of one per message. Never acks a
        delivery it was not given: one held back (received while stopping, or settled
        later) makes it ack one by one.
        """
        tags = {delivery.tag for delivery in deliveries}
        if not tags:
            return
        last = max(tags)
        if len(tags) > 1 and all(tag in tags for tag in self._unsettled if tag <= last):
            with _lost_is_unavailable():
                self.channel.basic_ack(last, multiple=True)
            self._unsettled -= tags
            return
        for delivery in deliveries:
            self.ack(delivery)

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        """requeue=False sends the message to the dead-letter queues."""
        name = queue_name(self.namespace, delivery.queue)
        if not requeue and name in self._found_as_is:
            # A queue found as it was may have no dead-letter exchange, and then a
            # rejected message would be dropped: dead-letter it ourselves, confirmed
            # before the original goes (a crash in between leaves both; both are safe).
            headers = {k: v for k, v in delivery.headers.items() if k not in _BROKER_HEADERS}
            headers["x-death"] = [{"reason": "rejected", "queue": name, "count": 1}]
            props = pika.BasicProperties(delivery_mode=2, headers=headers)
            try:
                with _lost_is_unavailable():
                    self.channel.basic_publish(self.dead_letter_exchange, "", delivery.body,
                                               properties=props, mandatory=True)
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                raise BrokerUnavailable(f"broker refused a dead letter: {e!r}") from None
            self.ack(delivery)
            return
        self._settle(delivery.tag,
                     lambda: self.channel.basic_nack(delivery.tag, requeue=requeue))

    def retry_later(self, delivery: Delivery) -> None:
        """Put the message back at the end of its queue with one more failure counted.

        A confirmed copy with `failures` + 1 is published, then the original is acked; a
        crash in between leaves both, which is harmless because every handler is
        idempotent. Counting failures ourselves, rather than with x-delivery-count,
        keeps crashes and outages from using up a message's retries; and the copy
        waits behind the other messages instead of blocking the queue's head.
        """
        headers = {k: v for k, v in delivery.headers.items() if k not in _BROKER_HEADERS}
        headers[FAILURES_HEADER] = delivery.failures + 1
        self.publish(delivery.queue, headers, delivery.body)  # each queue's binding key
        self.ack(delivery)

    def _settle(self, tag: int, settle: Callable[[], None]) -> None:
        with _lost_is_unavailable():
            settle()
        self._unsettled.discard(tag)

    def _on_connection_blocked(self, _connection: Any, frame: Any) -> None:
        """pika calls this, from inside whatever call is serving the connection (often
        the publish that is blocked), when the broker blocks our publishes
        (Connection.Blocked): a resource alarm, memory or disk. RabbitMQ sends it on the
        first publish after the alarm went off, so only publishers hear of it; a
        consumer's connection goes on.

        Nothing is lost: the publish waits unconfirmed, and the message it came from
        unacknowledged. The worker says why it waits, and says it again while the alarm
        lasts (the API forgets a report after a few minutes), until it is unblocked or
        the connection goes.
        """
        reason = str(getattr(frame.method, "reason", "") or "no reason given")
        self._alarm_text = f"the broker blocks publishing: {reason}"
        log.warning("the broker blocks publishing: waiting", extra={"reason": reason})
        self._report_alarm()

    def _report_alarm(self) -> None:
        """Report the alarm, and again every REPORT_EVERY seconds on pika's own timer: it
        runs in this thread whenever pika serves the connection, as it does throughout a
        blocked publish, so no report can come after the alarm is cleared."""
        HEALTH.report(WAITING, self._alarm_text, topic=ALARM_TOPIC)
        if self.connection is not None:
            ioloop = self.connection._impl.ioloop
            if self._alarm_renewal is not None:
                ioloop.remove_timeout(self._alarm_renewal)
            self._alarm_renewal = ioloop.call_later(health.REPORT_EVERY, self._report_alarm)

    def _on_connection_unblocked(self, _connection: Any, _frame: Any) -> None:
        """pika calls this when the broker takes our publishes again
        (Connection.Unblocked): the alarm is over, and the waiting publish goes on."""
        log.info("the broker takes publishes again")
        self._end_alarm()

    def _end_alarm(self) -> None:
        if self._alarm_renewal is not None and self.connection is not None:
            self.connection._impl.ioloop.remove_timeout(self._alarm_renewal)
        self._alarm_renewal = None
        HEALTH.clear(WAITING, topic=ALARM_TOPIC)

    def _open(self) -> pika.BlockingConnection:
        if self.connection is None:
            raise BrokerUnavailable("broker: not connected")
        return self.connection

    def close(self) -> None:
        """Close quietly: unacknowledged messages go back to their queue."""
        if self._helper is not None:
            self._helper.shutdown(wait=True)  # idle: keep_alive_during always waits
            self._helper = None
        if self.connection is not None and not self.connection.is_open:
            # Lost, not closed by us: the next connection starts at the next node.
            _first_node[self._url] = self._node + 1
        try:
            if self.connection is not None and self.connection.is_open:
                self.connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
            pass
        self._end_alarm()  # the next connection is told anew of an alarm that holds


class _Pipeline:
    """A channel in confirm mode whose confirms are counted here (see publish_many).

    The broker numbers a channel's publishes from 1 and confirms each, or several at
    once (multiple: every number up to this one), not necessarily in order.
    """

    def __init__(self, channel: BlockingChannel) -> None:
        self.channel = channel
        self.sent = 0  # the number of the last message published
        self.floor = 0  # every number up to this one is confirmed
        self.above: set[int] = set()  # numbers above the floor confirmed one by one
        self.refused = ""  # why the broker refused a message, if it did
        ready: list[bool] = []
        channel._impl.add_on_return_callback(self._on_return)
        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm,
                                       callback=lambda _frame: ready.append(True))
        channel._flush_output(lambda: bool(ready))

    def settled(self) -> bool:
        return self.floor >= self.sent

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self.refused = f"nack of message {method.delivery_tag}"
        elif method.multiple:
            self.floor = max(self.floor, method.delivery_tag)
        else:
            self.above.add(method.delivery_tag)
        while self.floor + 1 in self.above:
            self.floor += 1
        self.above = {tag for tag in self.above if tag > self.floor}

    def _on_return(self, _channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.refused = f"returned unroutable: {method.reply_text}"


def _connect(url: str, timeout: float = 5.0) -> pika.BlockingConnection:
    """A plain connection to the first node of CHUTE_AMQP_URL that answers."""
    return pika.BlockingConnection(_node_parameters(url, timeout))


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when a node of the broker completes a handshake within `timeout` seconds:
    with a cluster, one node is enough, as every service moves to one that answers."""
    try:
        _connect(url, timeout).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


@dataclass(frozen=True)
class DeadLetter:
    """A message in {ns}.dead, as people need to see it."""

    kind: str | None
    file_id: str | None
    reason: str | None  # "rejected" (a handler gave up) or "delivery_limit" (crash loop)
    queue: str | None  # the queue it died in
    failures: int
    headers: dict[str, Any]
    body: bytes


def dead_letters(url: str, namespace: str, limit: int = 100) -> list[DeadLetter]:
    """Read up to `limit` messages of {ns}.dead without removing them.

    Each is fetched unacknowledged and handed back when the connection closes; the
    dead queue counts that as a delivery, and its limit (DEAD_READ_LIMIT) is out of reach.
    """
    conn = _connect(url)
    found: list[DeadLetter] = []
    try:
        ch = conn.channel()
        while len(found) < limit:
            method, props, body = ch.basic_get(queue_name(namespace, DEAD), auto_ack=False)
            if method is None:
                break
            headers = dict(props.headers or {})
            death = (headers.get("x-death") or [{}])[0]
            found.append(
                DeadLetter(
                    kind=headers.get("kind"),
                    file_id=headers.get("file_id"),
                    reason=death.get("reason") or headers.get("x-first-death-reason"),
                    queue=death.get("queue") or headers.get("x-first-death-queue"),
                    failures=_failures(headers),
                    headers=headers,
                    body=body,
                )
            )
    finally:
        conn.close()
    return found


def delete_namespace(url: str, namespace: str) -> None:
    """Remove every queue and exchange of a namespace (tests clean up with this)."""
    conn = _connect(url)
    try:
        ch = conn.channel()
        for queue in (FILES, RANGES, BATCHES, DEAD, DEAD_NOTIFY, CONTROL):
            ch.queue_delete(queue_name(namespace, queue))
        for exchange in ("events", "dead-letter"):
            ch.exchange_delete(f"{namespace}.{exchange}")
    finally:
        conn.close()


def dead_letter_count(url: str, namespace: str) -> int | None:
    """How many messages wait in {ns}.dead (the console's overview); None when the
    broker does not answer or the queue does not exist yet."""
    try:
        conn = _connect(url, 2.0)
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        return None
    try:
        frame = conn.channel().queue_declare(queue_name(namespace, DEAD), passive=True)
        return int(frame.method.message_count)
    except _LOST:
        return None
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a channel the broker closed closes the connection
            pass
