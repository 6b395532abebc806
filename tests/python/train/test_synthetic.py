"""recserve.train.synthetic: a seeded log in which every head has both classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve.train.labels import HEADS
from recserve.train.log import read_log
from recserve.train.replay import replay
from recserve.train.synthetic import write_synthetic_log


def test_same_seed_writes_the_same_log(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_synthetic_log(tmp_path / name, users=10, items=40, requests=30, seed=3)
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert a.records == b.records
    np.testing.assert_array_equal(a.catalog.vector, b.catalog.vector)
    write_synthetic_log(tmp_path / "c", users=10, items=40, requests=30, seed=4)
    assert read_log(tmp_path / "c").records != a.records


def test_every_head_has_both_classes(synthetic_log: Path) -> None:
    data = replay(read_log(synthetic_log))
    for k, head in enumerate(HEADS):
        column = data.labels[:, k]
        assert 0.02 < float((column >= 0.5).mean()) < 0.98, head
    assert data.unattributed == 0  # events without a request id still join by window


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_request"):
        write_synthetic_log(tmp_path, items=5, per_request=10)
