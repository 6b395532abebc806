"""``recserve retrain``: a service's own log trains its next model, which is checked against the
active one on the most recent part of the log and then served, to everyone or to a trial arm.

    report = retrain("recserve-data", RetrainOptions(holdout=0.1, margin=0.005, trial_share=0.1))

1. **Train** a candidate on the service's impression log (``<data_dir>/impressions``, with the
   ``catalog.npz`` the service keeps current at every snapshot), the last ``holdout`` of its
   viewed impressions by time held out (``recserve.train.trainer``).
2. **Score** the candidate and the active model on those held-out rows: AUC per head, each
   model through its own feature normalisation. Then HR@10 from a replay of the log through
   the engine (``recserve.evaluate.replay``): every event applied in time order, and each
   engaged (user, item) pair in the held-out period scored on the page the engine serving that
   model would have shown just before (``hr_sample`` pairs, seeded). The log holds what the
   active model chose to show, so this replay favours it (on the demo's logs it scores 0.98
   against the candidate's 0.55-0.60 while the candidate wins held-out AUC): the default
   ``metric`` is the held-out AUC of ``complete``, and HR@10 is reported beside it.
3. **Write** ``<models_dir>/<version>.rsm`` with both models' figures in its metadata
   (``retrain``).
4. **Serve**: if the candidate beats the active model on ``metric`` by more than ``margin``,
   it is activated; otherwise, unless it is behind by more than ``max_loss`` (then no one is
   served it), it serves ``trial_share`` of users as the experiment ``trial`` (the arm
   metrics then compare the two on live traffic). Either way
   through ``<models_dir>/serving.json``, which every replica reads every ``model_poll_s``
   (``recserve.service.model_store``): the job needs no API key and no route to the replicas.

The active model is the one ``serving.json`` names, else the built-in one.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recserve import mlp
from recserve.catalog import Item
from recserve.ingest.event_row import EventRow
from recserve.rank import BUILTIN_VERSION, ModelRegistry, Ranker
from recserve.service.model_store import Serving, open_models, valid_version
from recserve.train.log import Event, read_log
from recserve.train.trainer import evaluate, train

__all__ = ["RetrainOptions", "RetrainReport", "retrain"]

_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class RetrainOptions:
    holdout: float = 0.1  # the most recent share of the log's viewed impressions, by time
    metric: str = "auc:complete"  # or "auc:<head>", or "hr@10" (see the module doc)
    margin: float = 0.0  # the candidate must beat the active model by more than this
    trial_share: float = 0.1  # else serve it to this share of users; 0: keep the active one
    max_loss: float = 0.02  # but not if it is behind by more than this: kept
    version: str | None = None  # default: r<UTC time>
    hr_sample: int | None = 2000  # held-out pairs scored for HR@10 (None: all)
    config: Path | None = None  # the service's TOML settings (update rule, feed, ...)
    models_dir: str | None = None  # default: <data_dir>/models
    train: Mapping[str, Any] = field(default_factory=dict)  # epochs, hidden, seed, ...

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if not (self.metric == "hr@10" or self.metric.startswith("auc:")):
            raise ValueError(f"metric must be hr@10 or auc:<head>, got {self.metric!r}")
        if not 0.0 <= self.trial_share <= 0.5:
            raise ValueError(f"the trial share must be in [0, 0.5], got {self.trial_share}")
        if self.version is not None and not valid_version(self.version):
            raise ValueError(f"{self.version!r} is not a model version (A-Za-z0-9._-, 1-64)")


@dataclass
class RetrainReport:
    version: str
    active: str
    candidate: dict[str, Any]  # {"auc": {head: float | None}, "hr@10": float | None}
    incumbent: dict[str, Any]  # the active model's, on the same rows and replay
    decision: str  # "activated", "trial" or "kept"
    reason: str
    model_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrain(data_dir: str | Path, options: RetrainOptions | None = None) -> RetrainReport:
    """Trains, scores, writes and serves (see the module doc). ValueError, FileNotFoundError
    for a data directory it cannot train on."""
    o = options if options is not None else RetrainOptions()
    data = Path(data_dir)
    log_dir = data / "impressions"
    store = open_models(o.models_dir or str(data / "models"), data / "models-cache")
    serving = store.read_serving()
    active = serving.active if serving is not None else BUILTIN_VERSION
    version = o.version or dt.datetime.now(dt.UTC).strftime("r%Y%m%dT%H%M%SZ")
    if version in store.versions():
        raise ValueError(f"model {version} exists already in {store.where}: versions are immutable")

    served = _served_options(o.config)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{version}.rsm"
        result = train(
            log_dir, heldout_fraction=o.holdout, out=path, progress=False, **served, **o.train
        )
        dims = result.spec.dims
        registry = ModelRegistry(store.directory, dims, source=store)
        incumbent = registry.get(active)
        candidate_auc = {h: m["auc"] for h, m in result.metrics["int8"].items()}
        incumbent_auc = _auc_on(incumbent, result.spec.denormalize(result.x_heldout), result)
        events, items, vectors = _replay_input(log_dir)
        candidate_hr = _hr_at_10(events, items, vectors, path, o, "candidate")
        incumbent_hr = _hr_at_10(events, items, vectors, registry.path_of(active), o, active)
        candidate = {"auc": candidate_auc, "hr@10": candidate_hr}
        figures = {"auc": incumbent_auc, "hr@10": incumbent_hr}
        decision, reason = _decide(candidate, figures, o)
        model = mlp.Model.load(path)
        model.metadata["retrain"] = {
            "active": active,
            "candidate": candidate,
            "incumbent": figures,
            "holdout": o.holdout,
            "metric": o.metric,
            "decision": decision,
        }
        model.save(path)
        store.publish(path, version)
    if decision == "activated":
        store.write_serving(Serving(version))
    elif decision == "trial":
        store.write_serving(Serving(active, version, o.trial_share))
    model_path = f"{store.where.rstrip('/')}/{version}.rsm"
    return RetrainReport(version, active, candidate, figures, decision, reason, model_path)


def _served_options(config: Path | None) -> dict[str, Any]:
    """The service's update rule, affinity query and co-engagement options, so the rows are
    the ones it will build (as ``recserve train --config``)."""
    if config is None:
        return {}
    from recserve.profiles import UpdateRule
    from recserve.service.settings import load_settings

    settings = load_settings(config)
    return {
        "rule": UpdateRule.from_dict(settings.update_rule),
        "query": settings.feed.affinity_query(),
        "co_engagement": settings.co_engagement.options(),
    }


def _auc_on(ranker: Ranker, raw: Any, result: Any) -> dict[str, float | None]:
    """The ranker's AUC per head on the candidate's held-out rows (raw features), or {} if it
    reads other features than the candidate."""
    if ranker.spec.names != result.spec.names:
        return {}
    probs = ranker.model.predict(ranker.spec.normalize(raw))
    y = result.y_heldout
    heads = list(result.model.heads)
    shared = [h for h in ranker.heads if h in heads]
    labels = np.stack([y[:, heads.index(h)] for h in shared], axis=1)
    columns = np.stack([probs[:, list(ranker.heads).index(h)] for h in shared], axis=1)
    return {h: m["auc"] for h, m in evaluate(labels, columns, shared).items()}


def _replay_input(log_dir: Path) -> tuple[list[EventRow], list[Item], Any]:
    """The log's events as a replay reads them, and its catalogue as items (ids: the keys)."""
    log = read_log(log_dir)
    catalog = log.catalog
    keys = np.asarray(catalog.item).astype(np.int64).view(np.uint64)
    durations: dict[int, int] = {}
    events: list[EventRow] = []
    for record in log.records:
        if not isinstance(record, Event):
            continue
        key = int(record.item) & _U64
        if record.duration_ms:
            durations[key] = int(record.duration_ms)
        events.append(
            EventRow(
                event_id=record.event_id,
                user_id=record.user,
                item_id=str(key),
                type=record.type,
                watch_ms=int(record.watch_ms),
                duration_ms=int(record.duration_ms) or None,
                ts=int(round(record.ts * 1000)),
                request_id=record.request_id,
            )
        )
    known = {int(k) for k in keys.tolist()}
    events = [e for e in events if int(e.item_id) in known]
    items = [
        # Creators and tags are not in the log: each item its own creator, so the
        # diversity rules hold back nothing the service would not.
        Item(str(k), f"c{k}", durations.get(int(k), 15_000), (), int(c * 1000))
        for k, c in zip(keys.tolist(), catalog.created_at.tolist(), strict=True)
    ]
    return events, items, np.asarray(catalog.vector, dtype=np.float32)


def _hr_at_10(
    events: list[EventRow], items: list[Item], vectors: Any, model: Path, o: RetrainOptions,
    name: str,
) -> float | None:  # fmt: skip
    """HR@10 over the held-out period of a replay with ``model`` serving; None if the
    period has no engaged pair."""
    from recserve.evaluate.inputs import Catalogue
    from recserve.evaluate.replay import replay

    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / f"{name}.toml"
        models = model.parent.resolve()
        config.write_text(f'models_dir = "{models}"\nmodel = "{model.stem}"\n')
        result = replay(
            events,
            Catalogue(items, vectors),
            config=config,
            split=1.0 - o.holdout,
            k=10,
            sample=o.hr_sample,
            seed=int(o.train.get("seed", 0)),
            peers={},
        )
    score = result.policies["realtime"]
    return None if score.evaluated == 0 else float(score.hr)


def _decide(
    candidate: dict[str, Any], incumbent: dict[str, Any], o: RetrainOptions
) -> tuple[str, str]:
    if o.metric == "hr@10":
        new, old = candidate["hr@10"], incumbent["hr@10"]
    else:
        head = o.metric.split(":", 1)[1]
        new, old = candidate["auc"].get(head), incumbent["auc"].get(head)
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return "kept", f"the candidate has no {o.metric} on the held-out period"
    if old is None or new > old + o.margin:
        shown = "n/a" if old is None else f"{old:.4f}"
        return "activated", f"{o.metric} {new:.4f} against {shown} (margin {o.margin})"
    short = f"{o.metric} {new:.4f} against {old:.4f}: not ahead by more than {o.margin}"
    if new < old - o.max_loss:
        return "kept", f"{short}, and behind by more than {o.max_loss}: no one is served it"
    if o.trial_share > 0:
        return "trial", f"{short}: served to {o.trial_share:.0%} of users to compare live"
    return "kept", short
