"""The catalogue's snapshot in S3, from which a new replica starts (``snapshot_uri``)::

    s3://bucket/prefix/catalogue/<seq>/catalog.bin     the catalogue (CatalogImage)
                                      amplifier.bin   amplification (AmplifierImage)
                                      index.rsi       the ANN index
                                      vectors.bin     every item's key and vector (columns)
                                      manifest.json   seq, dims and each file's key, size
                                                      and SHA-256
    s3://bucket/prefix/catalogue/latest.json          the newest one's manifest, written last

``<seq>`` is the catalogue stream's sequence number of the last record in the snapshot: a
replica that loads it reads the stream on from there. The files are taken between two
records of the stream (on the reader's thread: no catalogue record applies meanwhile, and
amplification pauses for the images), written to a local directory, then uploaded; the
pointer goes last, so a reader never meets a half-written snapshot. ``keep`` snapshots stay;
older ones are deleted once a newer pointer is in place.

A file whose size or SHA-256 differs from its manifest is not loaded (CorruptFileError); the
reader then tries the snapshot before it (``manifests`` lists them newest first).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt

from recserve._columns import read_columns, write_columns
from recserve._core import CorruptFileError

__all__ = ["Downloaded", "S3Snapshots", "parse_uri", "read_vectors", "write_vectors"]

FILES = {
    "catalog": "catalog.bin",
    "amplifier": "amplifier.bin",
    "index": "index.rsi",
    "vectors": "vectors.bin",
}
POINTER = "latest.json"
MANIFEST = "manifest.json"
FORMAT = 1
_VECTORS_MAGIC, _VECTORS_VERSION = b"RSVECTS1", 1


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix ending in "/" or empty) of ``s3://bucket[/prefix]``; ValueError if not."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise ValueError(f"snapshot_uri must be s3://bucket[/prefix], got {uri!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def write_vectors(
    path: Path, keys: npt.NDArray[np.uint64], vectors: npt.NDArray[np.float32]
) -> None:
    write_columns(
        path,
        _VECTORS_MAGIC,
        _VECTORS_VERSION,
        {"key": keys, "vector": np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)},
    )


def read_vectors(path: Path, dims: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    columns = read_columns(path, _VECTORS_MAGIC, _VECTORS_VERSION)
    keys, flat = columns["key"], columns["vector"]
    if keys.dtype != np.uint64 or flat.dtype != np.float32 or len(flat) != len(keys) * dims:
        raise CorruptFileError(f"{path.name}: {len(keys)} keys do not fit {len(flat)} values")
    return keys.astype(np.uint64, copy=False), flat.astype(np.float32, copy=False).reshape(
        len(keys), dims
    )


@dataclass(frozen=True)
class Downloaded:
    seq: str
    dims: int
    paths: dict[str, Path]  # role -> the checked local file


class S3Snapshots:
    def __init__(self, s3: Any, uri: str, *, keep: int = 2) -> None:
        self.s3 = s3
        self.bucket, prefix = parse_uri(uri)
        self.prefix = prefix + "catalogue/"
        self.keep = keep

    # ---- write -------------------------------------------------------------------------------
    def publish(self, seq: str, dims: int, directory: Path) -> str:
        """Uploads the files ``FILES`` names in ``directory`` as the snapshot at ``seq``, then
        the pointer; deletes the oldest past ``keep``. Returns the pointer's key."""
        base = f"{self.prefix}{int(seq):030d}/"
        files = {}
        for role, name in FILES.items():
            path = directory / name
            key = base + name
            self.s3.upload_file(str(path), self.bucket, key)
            files[role] = {"key": key, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = json.dumps({"format": FORMAT, "seq": seq, "dims": dims, "files": files})
        self.s3.put_object(Bucket=self.bucket, Key=base + MANIFEST, Body=manifest.encode())
        key = self.prefix + POINTER
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=manifest.encode())
        self._prune()
        return key

    def _prune(self) -> None:
        bases = sorted(self._bases())
        for base in bases[: max(0, len(bases) - self.keep)]:
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=base)
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def _bases(self) -> list[str]:
        bases: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/"}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            bases += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return bases
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    # ---- read --------------------------------------------------------------------------------
    def pointer(self) -> dict[str, Any] | None:
        """The newest snapshot's manifest, or None if there is none yet. CorruptFileError if it
        does not parse."""
        return self.manifest(self.prefix + POINTER)

    def manifests(self) -> list[str]:
        """The keys of every snapshot's manifest, newest first, the pointer before them."""
        older = [base + MANIFEST for base in sorted(self._bases(), reverse=True)]
        return [self.prefix + POINTER, *older]

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest at ``key``; None if there is none, CorruptFileError if it does not
        parse."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        try:
            pointer = json.loads(body)
            if pointer["format"] != FORMAT:
                raise CorruptFileError(f"snapshot manifest format {pointer['format']} is unknown")
            int(pointer["seq"]), int(pointer["dims"])
            if set(pointer["files"]) != set(FILES):
                raise CorruptFileError(f"the snapshot manifest names {sorted(pointer['files'])}")
            return dict(pointer)
        except (ValueError, KeyError, TypeError) as error:
            raise CorruptFileError(f"snapshot manifest {key} does not parse: {error}") from None

    def download(self, pointer: dict[str, Any], directory: Path) -> Downloaded:
        """The manifest's files in ``directory``, each checked (CorruptFileError if one differs
        from the manifest: nothing of the snapshot may be used then)."""
        paths = {}
        for role, entry in pointer["files"].items():
            path = directory / FILES[role]
            self.s3.download_file(self.bucket, entry["key"], str(path))
            if path.stat().st_size != int(entry["bytes"]) or _sha256(path) != entry["sha256"]:
                raise CorruptFileError(
                    f"s3://{self.bucket}/{entry['key']} differs from its snapshot manifest "
                    "(size or SHA-256): the snapshot was not used"
                )
            paths[role] = path
        return Downloaded(str(pointer["seq"]), int(pointer["dims"]), paths)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
