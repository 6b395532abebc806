"""recserve.store.disk_users: user images by key and lsn in SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from recserve.store.disk_users import DiskUsers

BIG = (1 << 64) - 2  # keys are unsigned 64-bit: SQLite's signed integers must round-trip


def test_the_newest_image_at_or_before_an_lsn_is_read(tmp_path: Path) -> None:
    users = DiskUsers(tmp_path / "users.sqlite")
    users.put([1, BIG], [(b"v1", b"s1"), (b"vb", b"sb")], lsn=5)
    users.put([1], [(b"v1'", b"s1'")], lsn=9)
    assert users.get([1, BIG, 3], lsn=4) == {}
    assert users.get([1, BIG, 3], lsn=5) == {1: (b"v1", b"s1"), BIG: (b"vb", b"sb")}
    assert users.get([1], lsn=8) == {1: (b"v1", b"s1")}
    assert users.get([1], lsn=100) == {1: (b"v1'", b"s1'")}
    assert users.count() == 2
    assert users.holds_any([3, BIG])
    assert users.holds_any(list(range(2, 1200)) + [1])  # past one query's parameters
    assert not users.holds_any([3, 4])


def test_prune_keeps_what_a_replay_from_the_lsn_on_can_ask_for(tmp_path: Path) -> None:
    users = DiskUsers(tmp_path / "users.sqlite")
    for lsn in (3, 6, 9):
        users.put([7], [(f"v{lsn}".encode(), b"s")], lsn=lsn)
    users.prune(7)  # a replay from lsn 7 on may ask for 6 (the newest by then) or 9
    assert users.get([7], lsn=6) == {7: (b"v6", b"s")}
    assert users.get([7], lsn=5) == {}  # 3 went
    assert users.get([7], lsn=10) == {7: (b"v9", b"s")}


def test_images_survive_reopening_and_delete_removes_every_version(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite"
    users = DiskUsers(path)
    users.put([BIG, 2], [(b"x" * 100, b"y"), (b"a", b"b")], lsn=1)
    users.put([BIG], [(b"z" * 100, b"y")], lsn=2)
    users.sync()
    users.close()
    users = DiskUsers(path)
    assert users.get([BIG], lsn=2) == {BIG: (b"z" * 100, b"y")}
    assert users.delete(BIG)
    assert not users.delete(BIG)
    assert users.get([BIG], lsn=10) == {}
    users.sync(truncate=True)
    users.close()
    for file in tmp_path.iterdir():  # secure_delete: the bytes are overwritten, not left
        assert b"x" * 100 not in file.read_bytes()
        assert b"z" * 100 not in file.read_bytes()


def test_a_mismatched_put_is_an_error_and_stores_nothing(tmp_path: Path) -> None:
    users = DiskUsers(tmp_path / "users.sqlite")
    with pytest.raises(ValueError, match="zip"):
        users.put([1, 2], [(b"v", b"s")], lsn=1)
    assert users.count() == 0
