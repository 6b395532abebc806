"""Where the models live and which one serves: a directory, or an S3 prefix shared by every
replica (``models_dir = "s3://bucket/prefix"``)::

    <models_dir>/<version>.rsm     the int8 models (recserve.mlp, written by recserve train)
    <models_dir>/serving.json      {"active": "<version>", "trial": "<version>" | null,
                                    "trial_share": 0.1}: what serves, written whole

A replica reads ``serving.json`` at start and again every ``model_poll_s``, so an activation
made on one replica, or written by a retraining job (``recserve retrain``), reaches every
replica within that time. With S3, a model is downloaded to ``<data_dir>/models-cache/`` the
first time it is asked for; a version is immutable once written (a new model, a new version).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recserve._files import write_atomic
from recserve.rank import VERSION

__all__ = ["DirectoryModels", "S3Models", "Serving", "open_models", "valid_version"]

SERVING = "serving.json"
MAX_TRIAL_SHARE = 0.5  # a trial is the smaller arm; past half, activate it


@dataclass(frozen=True)
class Serving:
    """The active version and, optionally, a trial version served to ``trial_share`` of users
    (an experiment named ``trial`` with arms ``control`` and the version)."""

    active: str
    trial: str | None = None
    trial_share: float = 0.0

    def __post_init__(self) -> None:
        for version in (self.active, self.trial):
            if version is not None and not valid_version(version):
                raise ValueError(f"{version!r} is not a model version (A-Za-z0-9._-, 1-64)")
        if self.trial is not None and not 0.0 < self.trial_share <= MAX_TRIAL_SHARE:
            raise ValueError(
                f"trial_share must be in (0, {MAX_TRIAL_SHARE}], got {self.trial_share}"
            )
        if self.trial is not None and self.trial == self.active:
            raise ValueError(f"the trial {self.trial!r} is the active model already")

    def to_json(self) -> bytes:
        body = {"active": self.active, "trial": self.trial, "trial_share": self.trial_share}
        return (json.dumps(body) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Serving:
        try:
            body = json.loads(data)
            return cls(str(body["active"]), body.get("trial"), float(body.get("trial_share", 0)))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{where}: not a serving choice ({error})") from None


def valid_version(version: str) -> bool:
    return bool(VERSION.fullmatch(version)) and not version.startswith(".")


class DirectoryModels:
    """Models and the serving choice in a local directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def where(self) -> str:
        return str(self.directory)

    def fetch(self, version: str) -> None:
        """Nothing to do: the file is here, or it is not (the registry says so)."""

    def versions(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.rsm") if valid_version(p.stem))

    def read_serving(self) -> Serving | None:
        path = self.directory / SERVING
        try:
            return Serving.from_json(path.read_bytes(), str(path))
        except FileNotFoundError:
            return None

    def write_serving(self, serving: Serving) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / SERVING, serving.to_json())

    def publish(self, path: Path, version: str) -> None:
        """Adds a model file under ``version`` (written whole, then renamed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / f"{version}.rsm", path.read_bytes())


class S3Models:
    """Models and the serving choice under an S3 prefix; models cached in ``cache``."""

    def __init__(self, s3: Any, uri: str, cache: Path) -> None:
        from recserve.service.catalogue_snapshots import parse_uri

        self.s3 = s3
        self.bucket, self.prefix = parse_uri(uri)
        self.directory = cache  # where the registry finds the files
        self.uri = uri

    @property
    def where(self) -> str:
        return self.uri

    def fetch(self, version: str) -> None:
        """Downloads ``<version>.rsm`` into the cache unless it is there. A version missing in
        S3 leaves no file, so the registry reports it unknown."""
        path = self.directory / f"{version}.rsm"
        if path.is_file() or not valid_version(version):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            self.s3.download_file(self.bucket, f"{self.prefix}{version}.rsm", str(part))
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return
            raise
        os.replace(part, path)

    def versions(self) -> list[str]:
        found: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/"}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                name = entry["Key"][len(self.prefix) :]
                if name.endswith(".rsm") and valid_version(name[: -len(".rsm")]):
                    found.append(name[: -len(".rsm")])
            if not page.get("IsTruncated"):
                return sorted(found)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def read_serving(self) -> Serving | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + SERVING)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return Serving.from_json(body, f"s3://{self.bucket}/{self.prefix}{SERVING}")

    def write_serving(self, serving: Serving) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + SERVING, Body=serving.to_json())

    def publish(self, path: Path, version: str) -> None:
        self.s3.upload_file(str(path), self.bucket, f"{self.prefix}{version}.rsm")


def open_models(models_dir: str, cache: Path) -> DirectoryModels | S3Models:
    """The store ``models_dir`` names: ``s3://bucket/prefix`` (boto3: the aws extra) or a path."""
    if models_dir.startswith("s3://"):
        import boto3

        return S3Models(boto3.session.Session().client("s3"), models_dir, cache)
    return DirectoryModels(Path(models_dir))
