"""Freezing a service's start-up heap: full collections skip it, later cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from qorchestra.heap import freeze_startup_heap


class Node:
    """An object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def frozen() -> Iterator[int]:
    try:
        yield freeze_startup_heap()
    finally:
        gc.unfreeze()  # the test process goes on collecting as before


def test_what_exists_at_start_up_is_frozen(frozen: int) -> None:
    assert frozen > 1000  # the interpreter, pytest and every module imported so far
    walked = gc.get_objects()  # what a full collection walks now
    assert not any(obj is weakref for obj in walked)  # a module imported before the freeze
    assert len(walked) < frozen


def test_a_cycle_made_after_the_freeze_is_still_collected(frozen: int) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    del first, second

    gc.collect()
    assert alive() is None
