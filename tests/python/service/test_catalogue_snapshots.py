"""Catalogue snapshots in S3 (moto's server): published with a pointer written last, read
back checked, the oldest pruned, and a damaged file refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aws_servers import client
from recserve._core import CorruptFileError
from recserve.service.catalogue_snapshots import (
    FILES,
    S3Snapshots,
    parse_uri,
    read_vectors,
    write_vectors,
)


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return client("s3", moto_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"snap-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def files(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for role, name in FILES.items():
        if role != "vectors":
            (directory / name).write_bytes(rng.bytes(1000))
    keys = np.arange(5, dtype=np.uint64)
    write_vectors(directory / FILES["vectors"], keys, rng.standard_normal((5, 4), np.float32))
    return directory


def test_a_published_snapshot_downloads_whole_and_checked(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    snapshots = S3Snapshots(s3, f"s3://{bucket}/svc")
    assert snapshots.pointer() is None
    source = files(tmp_path / "out", seed=1)
    snapshots.publish("42", 4, source)
    pointer = snapshots.pointer()
    assert pointer is not None
    assert (pointer["seq"], pointer["dims"]) == ("42", 4)
    (tmp_path / "in").mkdir()
    got = snapshots.download(pointer, tmp_path / "in")
    assert got.seq == "42"
    assert got.dims == 4
    for role, name in FILES.items():
        assert got.paths[role].read_bytes() == (source / name).read_bytes()
    keys, vectors = read_vectors(got.paths["vectors"], 4)
    assert keys.tolist() == list(range(5))
    assert vectors.shape == (5, 4)


def test_only_the_newest_snapshots_are_kept(s3: Any, bucket: str, tmp_path: Path) -> None:
    snapshots = S3Snapshots(s3, f"s3://{bucket}/svc", keep=2)
    for seq in ("7", "30", "500"):
        snapshots.publish(seq, 4, files(tmp_path / seq, seed=int(seq)))
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="svc/catalogue/")["Contents"]
    folders = {o["Key"].split("/")[2] for o in listed if not o["Key"].endswith("latest.json")}
    assert folders == {f"{30:030d}", f"{500:030d}"}
    assert snapshots.pointer()["seq"] == "500"  # type: ignore[index]
    # Newest first, each snapshot with a manifest of its own.
    manifests = [snapshots.manifest(key) for key in snapshots.manifests()]
    assert [m["seq"] for m in manifests if m is not None] == ["500", "500", "30"]


def test_a_file_that_differs_from_the_pointer_is_refused(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    snapshots = S3Snapshots(s3, f"s3://{bucket}/svc")
    snapshots.publish("9", 4, files(tmp_path / "out", seed=2))
    pointer = snapshots.pointer()
    assert pointer is not None
    key = pointer["files"]["index"]["key"]
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[500] ^= 0xFF  # same size, one byte flipped
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    (tmp_path / "in").mkdir()
    with pytest.raises(CorruptFileError, match="differs from its snapshot manifest"):
        snapshots.download(pointer, tmp_path / "in")


@pytest.mark.parametrize(
    "text", ["not json", json.dumps({"format": 99}), json.dumps({"format": 1, "seq": "x"})]
)
def test_a_pointer_that_does_not_parse_is_refused(s3: Any, bucket: str, text: str) -> None:
    s3.put_object(Bucket=bucket, Key="svc/catalogue/latest.json", Body=text.encode())
    with pytest.raises(CorruptFileError):
        S3Snapshots(s3, f"s3://{bucket}/svc").pointer()


def test_a_vectors_file_of_other_dims_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    write_vectors(path, np.arange(3, dtype=np.uint64), np.zeros((3, 4), np.float32))
    with pytest.raises(CorruptFileError, match="do not fit"):
        read_vectors(path, 5)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [("s3://b", ("b", "")), ("s3://b/p/q/", ("b", "p/q/")), ("s3://b/p", ("b", "p/"))],
)
def test_snapshot_uris_parse_to_bucket_and_prefix(uri: str, parsed: tuple[str, str]) -> None:
    assert parse_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["b/p", "https://b/p", "s3:///p", "s3://b/p?x=1"])
def test_other_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket"):
        parse_uri(uri)
