"""The feed service's state in files of its own beside each snapshot of the embedded store, so
that a restart loads it instead of rebuilding it (``recserve.store.embedded.FileExtension``):

    snapshots/catalog-<lsn>.bin      the catalogue at lsn (recserve.catalog.CatalogImage)
    snapshots/amplifier-<lsn>.bin    amplification at lsn (recserve.amplify.AmplifierImage)
    snapshots/index-<lsn>.rsi        the ANN index (recserve.ann.Index.save)

The catalogue and amplification images are taken with applies paused (copies of three lists
and a dict: tens of milliseconds at a million items) and written once they resume. The index is
saved after them without pausing applies (copying the graph would hold them up about as long
as writing it), so it may already hold records after lsn: items added or updated since, items
removed since. That is harmless: recovery replays every record after lsn onto it, and each
record leaves the index holding what it says whatever was there before (an add of a present id
replaces its vector with the same one; a removal of an absent id changes nothing). So after the
replay every item a record after lsn touched is as its last record left it, and every other
item is as it was at lsn, which is what the index held too. ``check_index`` confirms the count.

A damaged or missing index file is reported and the index is rebuilt from the item vectors of
the profiles snapshot (the slow path: minutes at a million items). A damaged or missing
catalogue or amplification file is reported and the snapshot is not used, as for a damaged
state file: the older snapshot and the longer log behind it are the only other copy.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import ann
from recserve._core import CorruptFileError
from recserve.amplify import Amplifier, AmplifierImage
from recserve.catalog import Catalog, CatalogImage
from recserve.store.embedded import LoadedFiles

__all__ = ["ROLES", "LoadedState", "StateImage", "check_index", "gc_paused", "load", "load_index"]

ROLES = ("catalog", "amplifier", "index")
_NAMES = {"catalog": "catalog-{:020d}.bin", "amplifier": "amplifier-{:020d}.bin"}
_INDEX_NAME = "index-{:020d}.rsi"


class StateImage:
    """The catalogue and amplification at lsn (taken with applies paused) and the live index."""

    def __init__(self, catalog: CatalogImage, amplifier: AmplifierImage, index: ann.Index) -> None:
        self.catalog = catalog
        self.amplifier = amplifier
        self.index = index

    def write(self, directory: Path, lsn: int) -> dict[str, str]:
        names = {
            "catalog": _NAMES["catalog"].format(lsn),
            "amplifier": _NAMES["amplifier"].format(lsn),
            "index": _INDEX_NAME.format(lsn),
        }
        self.catalog.write(directory / names["catalog"])
        self.amplifier.write(directory / names["amplifier"])
        self.index.save(directory / names["index"])  # after the images: at lsn or later
        return names


@dataclass
class LoadedState:
    """What ``load`` read and checked, for ``_State.restore``, which takes it out (``take``):
    the store keeps the object, not the file contents."""

    users: Any
    catalog: Mapping[str, npt.NDArray[Any]]
    amplifier: Mapping[str, npt.NDArray[Any]]
    index: ann.Index | None  # None: rebuild it from the profiles' vectors
    stream_seq: str | None = None  # the last catalogue stream record applied (catalogue_stream)

    def take(self) -> LoadedState:
        taken = LoadedState(self.users, self.catalog, self.amplifier, self.index, self.stream_seq)
        self.catalog, self.amplifier, self.index = {}, {}, None
        return taken


def load(state: Any, files: Mapping[str, Path], catalog: Catalog) -> LoadedFiles:
    """Reads and checks the files of a snapshot whose extension state is ``state``; ``catalog``
    (empty, configured) says which index parameters fit. CorruptFileError (the snapshot is not
    used) for a damaged or missing catalogue or amplification file."""
    if not isinstance(state, dict) or "users" not in state:
        raise CorruptFileError(f"the extension state is not the feed service's: {str(state)[:80]}")
    if "catalog" in state:  # written before the files: JSON, and an index to rebuild
        problem = "the snapshot has no index file (written by an older version): index rebuilt"
        return LoadedFiles(state, {"index": "rebuilt"}, [problem])
    for role in ("catalog", "amplifier"):
        if role not in files or not files[role].is_file():
            raise CorruptFileError(f"its {role} file {files.get(role, '(none)')} is missing")
    columns = Catalog.read(files["catalog"]), Amplifier.read(files["amplifier"])
    index, problems = load_index(files.get("index"), catalog)
    how = {
        "catalog": "loaded",
        "amplifier": "loaded",
        "index": "rebuilt" if index is None else "loaded",
    }
    loaded = LoadedState(state["users"], *columns, index, state.get("stream_seq"))
    return LoadedFiles(loaded, how, problems)


def load_index(path: Path | None, catalog: Catalog) -> tuple[ann.Index | None, list[str]]:
    if path is None:
        return None, ["the snapshot has no index file: index rebuilt from the stored vectors"]
    try:
        index = ann.Index.load(path)
    except (CorruptFileError, OSError, RuntimeError) as error:
        return None, [
            f"index {path.name} was not loaded ({error}): rebuilt from the stored vectors"
        ]
    mismatch = catalog.index_mismatch(index)
    if mismatch is not None:
        return None, [
            f"index {path.name} does not fit ({mismatch}): rebuilt from the stored vectors"
        ]
    return index, []


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: building millions of long-lived objects otherwise
    triggers full collections that walk all of them, again and again (3x the time). After, the
    objects are frozen (``gc.freeze``): they live as long as the service, and a collection
    that walked them all would stall it (0.3 s at a million items) for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def check_index(catalog: Catalog, profiles_vectors: Any) -> str | None:
    """After recovery: the index holds every live item and nothing else, or it is rebuilt from
    ``profiles_vectors(keys)``; returns the problem found, or None."""
    if len(catalog.index) == len(catalog):
        return None
    problem = (
        f"the index holds {len(catalog.index)} items after recovery, the catalogue "
        f"{len(catalog)}: index rebuilt from the stored vectors"
    )
    keys = np.asarray(catalog.keys(), dtype=np.uint64)
    fresh = ann.Index(
        catalog.dims,
        metric=catalog.index.metric,  # type: ignore[arg-type]
        dtype=catalog.index.dtype,  # type: ignore[arg-type]
        M=catalog.index.M,
        ef_construction=catalog.index.ef_construction,
        rerank=catalog.index.rerank,
    )
    if len(keys):
        fresh.add(keys, profiles_vectors(keys), threads=catalog.index_threads)
    catalog.index = fresh
    return problem
