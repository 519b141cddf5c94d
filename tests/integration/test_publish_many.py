"""Broker.publish_many: many messages, one wait for their confirms, against the real broker."""

from __future__ import annotations

import pytest

from chute.errors import BrokerUnavailable
from chute.rabbitmq.broker import FILES, Broker, Delivery, delete_namespace, queue_name
from harness import AMQP, Environment, wait_until


def ready(broker: Broker, namespace: str) -> int:
    return broker.channel.queue_declare(queue_name(namespace, FILES),
                                        passive=True).method.message_count


def test_every_message_is_confirmed_and_a_refused_one_raises(environment: Environment
                                                              ) -> None:
    namespace = environment.namespace
    broker = Broker(AMQP, namespace)
    try:
        for group in range(3):  # the channel's numbering carries over between calls
            broker.publish_many([(FILES, {"n": n}, b"%d" % n) for n in range(100)])
            assert ready(broker, namespace) == 100 * (group + 1)
        broker.publish_many([])
        with pytest.raises(BrokerUnavailable, match="unroutable"):
            broker.publish_many([(FILES, {}, b"ok"), ("no-such-key", {}, b"lost")])
        broker.publish_many([(FILES, {}, b"after")])  # a fresh channel after a refusal
        assert ready(broker, namespace) == 302
        bodies = []
        while (got := broker.channel.basic_get(queue_name(namespace, FILES),
                                               auto_ack=True))[0] is not None:
            bodies.append(got[2])
        assert bodies[:100] == [b"%d" % n for n in range(100)]  # in order
        assert bodies[-2:] == [b"ok", b"after"]
    finally:
        broker.close()
        delete_namespace(AMQP, namespace)


def _received(broker: Broker, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    broker.consume(FILES, 100, got.append)
    wait_until(lambda: broker.poll(0.05) or len(got) == count, 10, 0,
               what=f"{count} deliveries")
    return got


def test_ack_all_acks_at_once_only_what_it_is_given(environment: Environment) -> None:
    namespace = environment.namespace
    broker = Broker(AMQP, namespace)
    try:
        broker.publish_many([(FILES, {}, b"%d" % n) for n in range(6)])
        first = _received(broker, 6)
        broker.ack_all(first[:2])  # every unsettled one up to the last: one ack
        held = first[2]  # say, received while stopping: never to be acked by another's ack
        broker.ack_all(first[3:])
        broker.close()  # what is unacked goes back to the queue

        broker = Broker(AMQP, namespace)
        [again] = _received(broker, 1)
        assert again.body == held.body and again.redelivered
        broker.ack_all([again])
        assert ready(broker, namespace) == 0
    finally:
        broker.close()
        delete_namespace(AMQP, namespace)
