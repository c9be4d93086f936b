"""The read-ahead thread every streamed format uses: order, errors, bounded memory, early stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tasks.extract.chunks import read_ahead


def counted(n: int, produced: list[int]) -> Iterator[int]:
    for i in range(n):
        produced.append(i)
        yield i


def test_items_arrive_in_order_and_a_producer_error_reaches_the_caller() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        list(read_ahead(failing()))


def test_the_producer_runs_one_item_ahead_and_no_further() -> None:
    produced: list[int] = []
    items = read_ahead(counted(10, produced))
    assert next(items) == 0
    time.sleep(0.3)  # the producer had time to run ahead as far as it may
    assert produced == [0, 1]  # item 1 is ready, item 2 not started while the caller holds item 0
    assert next(items) == 1
    time.sleep(0.3)
    assert produced == [0, 1, 2]


def test_a_caller_that_stops_early_stops_the_producer() -> None:
    produced: list[int] = []
    before = threading.active_count()
    items = read_ahead(counted(1000, produced))
    assert next(items) == 0
    items.close()  # the caller gives up (an error while writing, say)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
    assert len(produced) <= 2
