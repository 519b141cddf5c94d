"""chute.commands.rebuild.ahead: items computed by a thread, handed over in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chute.commands.rebuild import ahead


@given(st.lists(st.integers()), st.integers(1, 5))
def test_every_item_arrives_once_in_order(items: list[int], depth: int) -> None:
    assert list(ahead(iter(items), depth)) == items


def test_an_exception_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad header")

    got = []
    with pytest.raises(ValueError, match="bad header"):
        for item in ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_thread() -> None:
    before = threading.active_count()
    stream = ahead(iter(range(1000)), depth=2)
    assert next(stream) == 0
    stream.close()  # as load_file does once the FileDone is in
    assert threading.active_count() == before
