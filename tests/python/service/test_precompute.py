"""recserve.service.precompute: a page computed in the background is served once, only while
its stamp is the user's, and never with an item taken down since."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from recserve.feed import FeedResult, Served
from recserve.ids import key_of
from recserve.service.precompute import Page, Precomputer


def page(*keys: int, stamp: tuple[int, ...] = (1,)) -> Page:
    items = [Served(k, f"i{k}", 1.0, "test") for k in keys]
    return Page(stamp, FeedResult(items, "m1", {}), "exp:a")


class Computer:
    """``compute`` for a Precomputer: the page set for each user, counted."""

    def __init__(self) -> None:
        self.pages: dict[str, Page | Exception] = {}
        self.calls: list[str] = []
        self.done = threading.Semaphore(0)

    def __call__(self, user_id: str) -> Page | None:
        self.calls.append(user_id)
        try:
            result = self.pages[user_id]
            if isinstance(result, Exception):
                raise result
            return result
        finally:
            self.done.release()

    def wait(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.done.acquire(timeout=10)


@pytest.fixture
def computer() -> Computer:
    return Computer()


@pytest.fixture
def precomputer(computer: Computer) -> Iterator[Precomputer]:
    p = Precomputer(computer)
    yield p
    p.stop()


def settle(precomputer: Precomputer) -> None:
    """Until the thread has stored what it computed."""
    for _ in range(1000):
        if precomputer.pages()[1] == 0:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the precompute thread did not finish")


def test_a_page_is_served_once_while_its_stamp_holds(
    computer: Computer, precomputer: Precomputer
) -> None:
    computer.pages["u1"] = page(1, 2, stamp=(5, 6))
    precomputer.enqueue(["u1"])
    computer.wait()
    settle(precomputer)
    assert precomputer.pages() == (1, 0)
    taken = precomputer.take(key_of("u1"), lambda key: (5, 6))
    assert taken is not None
    assert [s.key for s in taken[0].items] == [1, 2]
    assert taken[1] == "exp:a"
    assert precomputer.take(key_of("u1"), lambda key: (5, 6)) is None  # served once


def test_a_page_whose_stamp_moved_is_not_served(
    computer: Computer, precomputer: Precomputer
) -> None:
    computer.pages["u1"] = page(1, stamp=(5, 6))
    precomputer.enqueue(["u1"])
    computer.wait()
    settle(precomputer)
    assert precomputer.take(key_of("u1"), lambda key: (5, 7)) is None
    assert precomputer.pages() == (0, 0)


def test_pages_holding_a_taken_down_item_are_dropped(
    computer: Computer, precomputer: Precomputer
) -> None:
    computer.pages.update(u1=page(1, 2), u2=page(3))
    precomputer.enqueue(["u1", "u2"])
    computer.wait(2)
    settle(precomputer)
    precomputer.drop_containing(2)
    assert precomputer.take(key_of("u1"), lambda key: (1,)) is None
    assert precomputer.take(key_of("u2"), lambda key: (1,)) is not None


def test_a_forgotten_user_has_no_page(computer: Computer, precomputer: Precomputer) -> None:
    computer.pages["u1"] = page(1)
    precomputer.enqueue(["u1"])
    computer.wait()
    settle(precomputer)
    precomputer.forget("u1")
    assert precomputer.take(key_of("u1"), lambda key: (1,)) is None


def test_a_failed_compute_leaves_no_page_and_the_thread_goes_on(
    computer: Computer, precomputer: Precomputer
) -> None:
    computer.pages.update(bad=RuntimeError("boom"), u1=page(1))
    precomputer.enqueue(["bad", "u1"])
    computer.wait(2)
    settle(precomputer)
    assert precomputer.take(key_of("bad"), lambda key: (1,)) is None
    assert precomputer.take(key_of("u1"), lambda key: (1,)) is not None


def test_a_user_queued_twice_is_computed_once() -> None:
    release = threading.Event()
    computer = Computer()
    computer.pages.update(first=page(1), u1=page(2))

    def compute(user_id: str) -> Page | None:
        if user_id == "first":  # holds the thread while u1 is queued twice
            release.wait(10)
        return computer(user_id)

    precomputer = Precomputer(compute)
    try:
        precomputer.enqueue(["first"])
        precomputer.enqueue(["u1", "u1"])
        precomputer.enqueue(["u1"])
        release.set()
        computer.wait(2)
        settle(precomputer)
        assert computer.calls == ["first", "u1"]
    finally:
        precomputer.stop()
