"""Shared logs for the training tests: a small seeded synthetic one, and hand-made records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recserve.train.log import LogWriter, Record, write_catalog
from recserve.train.synthetic import write_synthetic_log


@pytest.fixture(scope="session")
def synthetic_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 impressions of 80 users over 300 items (seed 7)."""
    path = tmp_path_factory.mktemp("synthetic")
    write_synthetic_log(path, users=80, items=300, requests=600, seed=7, segment_records=5000)
    return path


WriteLog = Callable[[Path, list[Record]], Path]


@pytest.fixture
def write_log() -> WriteLog:
    """Writes a log of these records over 4 items (ids 1..4, vectors e_k + 0.1 in 4-d)."""

    def write(path: Path, records: list[Record]) -> Path:
        vectors = np.eye(4, dtype=np.float32) + 0.1
        write_catalog(path, np.arange(1, 5), vectors, np.zeros(4))
        with LogWriter(path) as writer:
            writer.extend(records)
        return path

    return write
