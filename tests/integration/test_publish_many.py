"""Broker.publish_many: many messages, one wait for their confirms, against the real broker."""

from __future__ import annotations

import pytest

from chute.broker import FILES, Broker, BrokerUnavailable, delete_namespace, queue_name
from harness import AMQP, Environment


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
