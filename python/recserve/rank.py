"""Ranking: the int8 multi-task model scores candidates, the blend turns its heads into one score.

    registry = ModelRegistry(models_dir, dims=64)    # *.rsm files, plus the built-in model
    ranker = registry.activate("ranker-7")          # checked, loaded, then swapped in
    probs, scores = ranker.score(features)          # [n, heads], [n]

A model file carries its feature spec (``recserve.features``) and blend weights in its
metadata, so a model is served with the features it was trained on. A model whose spec does not
match the service's dims is refused at activation, never half-loaded. Without any usable model
(a service at dims other than the built-in model's, before one is activated) the ranker is
``SimilarityRanker``: the score is the user-item dot product, and ``model_version`` says so.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recserve import mlp
from recserve.features import FeatureSpec

__all__ = [
    "BUILTIN_VERSION",
    "VERSION",
    "ModelRegistry",
    "ModelSource",
    "Ranker",
    "SimilarityRanker",
]

BUILTIN_VERSION = "builtin"
# A version names a file: <models_dir>/<version>.rsm. Anything else is no model (404), never a
# path the file system has to make sense of (a 300-character name was an OSError, a 500).
VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Ranker:
    version: str
    model: mlp.QuantizedModel
    spec: FeatureSpec
    blend: Mapping[str, float]

    @property
    def heads(self) -> list[str]:
        return self.model.heads

    def with_blend(self, blend: Mapping[str, float] | None) -> Ranker:
        if blend is None:
            return self
        unknown = sorted(set(blend) - set(self.heads))
        if unknown:
            raise ValueError(f"blend names head(s) {unknown} that model {self.version} lacks")
        return Ranker(self.version, self.model, self.spec, {**self.blend, **blend})

    def score(self, rows: F32) -> tuple[F32, F32]:
        """Rows [n, spec.width], normalised -> (head probabilities [n, heads], scores [n])."""
        probs = self.model.predict(rows)
        scores = np.zeros(len(probs), dtype=np.float32)
        for h, weight in enumerate(self.head_weights):  # head by head, as the native feed adds
            scores += probs[:, h] * weight
        return probs, scores

    @property
    def head_weights(self) -> npt.NDArray[np.float32]:
        """The blend's weight of each head, in the model's head order (0 for unnamed heads)."""
        return np.array([self.blend.get(h, 0.0) for h in self.heads], dtype=np.float32)


@dataclass(frozen=True)
class SimilarityRanker:
    """No model: the score is the dot product of query and item."""

    version: str = "similarity"
    heads: tuple[str, ...] = ()
    blend: Mapping[str, float] = field(default_factory=dict)

    def with_blend(self, blend: Mapping[str, float] | None) -> SimilarityRanker:
        return self


def _load(path: Path, version: str, dims: int) -> Ranker:
    model = mlp.Model.load(path)
    if not isinstance(model, mlp.QuantizedModel):
        raise ValueError(f"model {version} ({path}) is fp32; serve the int8 export")
    meta = model.metadata
    if "feature_spec" not in meta:
        raise ValueError(f"model {version} ({path}) has no feature_spec in its metadata")
    spec = FeatureSpec.from_dict(meta["feature_spec"])
    if spec.dims != dims:
        raise ValueError(f"model {version} reads dims {spec.dims}; this service has dims {dims}")
    if not spec.fitted or model.input_dim != spec.width:
        raise ValueError(
            f"model {version} takes {model.input_dim} inputs; its feature spec gives {spec.width}"
        )
    blend = {str(k): float(v) for k, v in meta.get("blend_weights", {}).items()}
    return Ranker(version, model, spec, blend)


class ModelSource(Protocol):
    """Where a registry's files come from when they are not all in its directory already
    (``recserve.service.model_store.S3Models``): ``fetch`` puts a version's file there."""

    def fetch(self, version: str) -> None: ...

    def versions(self) -> list[str]: ...


class ModelRegistry:
    """The models a service may serve: ``<models_dir>/<version>.rsm`` and the built-in one.
    A version is 1 to 64 of ``A-Za-z0-9._-``, not starting with a dot; files named otherwise
    are not models."""

    def __init__(
        self, models_dir: str | os.PathLike[str], dims: int, source: ModelSource | None = None
    ) -> None:
        self.models_dir = Path(models_dir)
        self.dims = dims
        self.source = source  # where the files come from, if not from models_dir alone
        self._lock = threading.Lock()
        self._loaded: dict[str, Ranker] = {}

    def _builtin_path(self) -> Path:
        return Path(str(resources.files("recserve") / "models" / "default.rsm"))

    def path_of(self, version: str) -> Path:
        if version == BUILTIN_VERSION:
            return self._builtin_path()
        if not VERSION.fullmatch(version) or version.startswith("."):
            raise KeyError(version)
        if self.source is not None:
            self.source.fetch(version)
        path = self.models_dir / f"{version}.rsm"
        if not path.is_file():
            raise KeyError(version)
        return path

    def versions(self) -> list[str]:
        if self.source is not None:
            return [BUILTIN_VERSION, *self.source.versions()]
        found = (
            sorted(
                p.stem
                for p in self.models_dir.glob("*.rsm")
                if VERSION.fullmatch(p.stem) and not p.stem.startswith(".")
            )
            if self.models_dir.is_dir()
            else []
        )
        return [BUILTIN_VERSION, *found]

    def get(self, version: str) -> Ranker:
        """The loaded ranker of a version (loaded once). KeyError: no such model;
        ValueError/CorruptFileError: it cannot serve here."""
        with self._lock:
            ranker = self._loaded.get(version)
            if ranker is None:
                ranker = self._loaded[version] = _load(self.path_of(version), version, self.dims)
            return ranker

    def describe(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"version": version}
        try:
            ranker = self.get(version)
        except (KeyError, ValueError) as error:
            out["servable"] = False
            out["problem"] = str(error)
            return out
        training = ranker.model.metadata.get("training", {})
        out.update(
            servable=True,
            heads=ranker.heads,
            blend_weights=dict(ranker.blend),
            inputs=ranker.model.input_dim,
            created_at=training.get("created_at"),
            layers=training.get("layers"),
        )
        return out
