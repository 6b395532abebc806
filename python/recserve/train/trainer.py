"""Train the multi-task ranker on an impression log, quantize it, and say what int8 costs.

>>> result = train("logs/ml100k", epochs=5, seed=0)
>>> result.metrics["fp32"]["complete"]["auc"], result.metrics["int8"]["complete"]["auc"]
>>> result.quantized.save("models/ranker.rsm")

Steps: replay the log into rows as of serve time (``recserve.train.replay``); leave out the
served-not-viewed impressions (no event joined them: the user never reached the item, so they label
no head); hold out the last ``heldout_fraction`` of the rest by serve time; fit the feature
normalisation on the training rows; train an MLP (ReLU hidden layers, one logit per head) with Adam
on the mean of the per-head binary cross-entropies (``watch_frac`` on its soft label) with PyTorch
on the CPU; export it to ``recserve.mlp.Model`` (weights [out, in], as ``nn.Linear`` holds them);
quantize it with calibration rows drawn from the training split; score the held-out rows with both
models. AUC is rank-based with ties counted half (``watch_frac``: against watch_frac >= 0.5); a head
whose held-out labels have one class has AUC None. A label the dataset marks unknown
(``Dataset.label_mask``: ``return`` censored by the log's end) is left out of its head's loss
and metrics.

**Distillation** (``distill=True``): the model trained offline need not be the model served.
A larger float teacher (``teacher_hidden``, 512 → 256 → 128 by default) is trained on the rows
first; then the served student (``hidden``) is trained on a mix of the true labels and the
teacher's probabilities on the training rows: loss = (1 − w) · true-label loss + w · soft loss,
``w = distill_weight`` (0.5). The soft loss is the binary cross-entropy against the teacher's
probability for the binary heads, the squared error to it for ``watch_frac`` (a regression of a
fraction); it applies to every training row, censored ``return`` labels included, since the
teacher has an answer there. A student of the same shape is also trained without the teacher
(same seed, epochs and batches) so the two can be compared; only the distilled student is
quantized and written, its metadata holding the teacher's layers and held-out AUCs
(``training.distillation``).

Everything random (initial weights, batch order, calibration rows) follows ``seed``; torch's
global random state is restored afterwards.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from recserve import mlp
from recserve.affinity import AffinityQuery
from recserve.features import FeatureSpec
from recserve.profiles import CoEngagementOptions, UpdateRule
from recserve.train.labels import HEADS, RETURN_WINDOW_S
from recserve.train.log import read_log
from recserve.train.replay import Dataset, replay

__all__ = [
    "DEFAULT_BLEND_WEIGHTS",
    "DEFAULT_TEACHER_HIDDEN",
    "TrainResult",
    "auc",
    "distillation_table",
    "evaluate",
    "log_loss",
    "train",
    "train_dataset",
]

#: How the feed blends the heads (watch completion dominant); stored in the model file.
DEFAULT_BLEND_WEIGHTS: dict[str, float] = {
    "complete": 1.0,
    "watch_frac": 0.6,
    "replay": 0.3,
    "share": 0.3,
    "like": 0.2,
    "follow": 0.2,
    "comment": 0.1,
    "skip": -0.5,
    # Whether the user comes back within a day is mostly about the user, the same for every
    # candidate; its item-dependent part has not been tried online. Off until an experiment
    # arm (``blend = {return = 0.1}``) shows it helps.
    "return": 0.0,
}
ACTIVATIONS: dict[str, str] = {"watch_frac": "sigmoid"}
#: Heads fitted as regressions of a fraction: their distillation loss is the squared error.
REGRESSION_HEADS: tuple[str, ...] = ("watch_frac",)
DEFAULT_TEACHER_HIDDEN: tuple[int, ...] = (512, 256, 128)

F32 = npt.NDArray[np.float32]


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ImportError(
            "training needs PyTorch, which is an optional extra: pip install 'recserve[train]'"
        ) from exc


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney), tied scores counted half; None with one class."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1) >= 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts  # 0-based rank of each distinct score's first copy
    mid_rank = first_rank + (counts + 1) / 2.0  # 1-based average rank over the ties
    rank_sum = mid_rank[inverse][y].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(labels: npt.ArrayLike, probs: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (soft labels allowed), probabilities clipped to [eps, 1-eps]."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length: {y.shape} vs {p.shape}")
    if y.size == 0:
        return math.nan
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def evaluate(
    labels: npt.ArrayLike,
    probs: npt.ArrayLike,
    heads: Sequence[str] = HEADS,
    mask: npt.ArrayLike | None = None,
) -> dict[str, dict[str, float | None]]:
    """{head: {"auc", "log_loss", "positive_rate", "rows"}} for probabilities [n, heads];
    ``mask`` (bool [n, heads]) leaves out the unknown labels."""
    y = np.asarray(labels)
    p = np.asarray(probs)
    known = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    out: dict[str, dict[str, float | None]] = {}
    for k, head in enumerate(heads):
        yk, pk = y[known[:, k], k], p[known[:, k], k]
        out[head] = {
            "auc": auc(yk, pk),
            "log_loss": log_loss(yk, pk),
            "positive_rate": float(yk.mean()) if len(yk) else math.nan,
            "rows": int(len(yk)),
        }
    return out


@dataclass(frozen=True)
class TrainResult:
    """The trained models, the held-out rows they were judged on, and the judgement.

    ``metrics``: ``{"fp32": {head: {...}}, "int8": {head: {...}},
    "max_abs_diff": float, "max_abs_diff_per_head": {head: float},
    "max_auc_loss": float | None}``; ``x_heldout`` is normalised (the models' input).
    """

    model: mlp.Model
    quantized: mlp.QuantizedModel
    spec: FeatureSpec
    x_heldout: F32
    y_heldout: F32
    x_calibration: F32
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    mask_heldout: npt.NDArray[np.bool_] | None = None
    teacher: mlp.Model | None = None
    without_teacher: mlp.Model | None = None


class TrainOptions(TypedDict, total=False):
    """The keywords ``train`` passes on to ``train_dataset`` (defaults there)."""

    epochs: int
    seed: int
    hidden: Sequence[int]
    batch_size: int
    learning_rate: float
    weight_decay: float
    heldout_fraction: float
    calibration_rows: int
    out: str | os.PathLike[str] | None
    progress: bool
    distill: bool
    teacher_hidden: Sequence[int]
    distill_weight: float


def train(
    log_dir: str | os.PathLike[str],
    *,
    window_s: float = 3600.0,
    negatives: int = 0,
    rule: UpdateRule | None = None,
    query: AffinityQuery | None = None,
    co_engagement: CoEngagementOptions | None = None,
    return_window_s: float = RETURN_WINDOW_S,
    **options: Unpack[TrainOptions],
) -> TrainResult:
    """Train on the log in ``log_dir``; with ``out``, write the int8 model there. ``negatives``:
    sampled negatives per impression (``recserve.train.replay``). ``rule``, ``query`` and
    ``co_engagement`` are the serving service's update rule, affinity query and co-engagement
    options (defaults: the service's defaults), so the rows are what it will build.
    ``return_window_s``: the ``return`` head's window (``recserve.train.labels``). ``options``
    are ``train_dataset``'s (epochs, seed, hidden, batch_size, learning_rate, weight_decay,
    heldout_fraction, calibration_rows, out, progress, distill, teacher_hidden,
    distill_weight)."""
    log = read_log(log_dir)
    query = query if query is not None else AffinityQuery()
    co_engagement = co_engagement if co_engagement is not None else CoEngagementOptions()
    dataset = replay(
        log,
        window_s=window_s,
        negatives=negatives,
        seed=options.get("seed", 0),
        rule=rule,
        query=query,
        profiles_config={"co_engagement": co_engagement},
        return_window_s=return_window_s,
    )
    info: dict[str, Any] = {
        "log": str(log_dir),
        "skipped_lines": list(log.report.skipped),
        "negatives": negatives,
        "affinity_query": asdict(query),
        "co_engagement": asdict(co_engagement),
        "return_window_s": return_window_s,
        "session_timeout_s": (rule if rule is not None else UpdateRule()).session_timeout_seconds,
    }
    return train_dataset(dataset, extra_metadata=info, **options)


def train_dataset(
    dataset: Dataset,
    *,
    epochs: int = 5,
    seed: int = 0,
    hidden: Sequence[int] = (256, 128, 64),
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-5,
    heldout_fraction: float = 0.2,
    calibration_rows: int = 2048,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    extra_metadata: Mapping[str, Any] | None = None,
    distill: bool = False,
    teacher_hidden: Sequence[int] = DEFAULT_TEACHER_HIDDEN,
    distill_weight: float = 0.5,
) -> TrainResult:
    """``train`` on rows already replayed; with ``distill``, through a teacher (module doc)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden must be one or more positive layer sizes, got {tuple(hidden)}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if distill and (not teacher_hidden or any(int(h) < 1 for h in teacher_hidden)):
        raise ValueError(
            f"teacher_hidden must be one or more positive layer sizes, got {tuple(teacher_hidden)}"
        )
    if not 0.0 <= distill_weight <= 1.0:
        raise ValueError(f"distill_weight must be in [0, 1], got {distill_weight}")
    # A served item never reached says nothing about it: its row trains no head.
    kept = np.arange(len(dataset)) if dataset.viewed is None else np.flatnonzero(dataset.viewed)
    n = len(kept)
    n_train = int(round(n * (1.0 - heldout_fraction)))
    if n_train < 1 or n - n_train < 1:
        raise ValueError(
            f"the log has {n} viewed impressions: too few to hold out {heldout_fraction:.0%}"
        )
    order = kept[np.argsort(dataset.ts[kept], kind="stable")]  # in time order already
    train_idx, held_idx = order[:n_train], order[n_train:]
    spec = dataset.spec.fit(dataset.rows[train_idx])
    x_train = spec.normalize(dataset.rows[train_idx])
    x_held = spec.normalize(dataset.rows[held_idx])
    y_train = dataset.labels[train_idx]
    y_held = dataset.labels[held_idx]
    mask = dataset.label_mask
    m_train = None if mask is None else mask[train_idx]
    m_held = None if mask is None else mask[held_idx]
    heads = list(dataset.heads)

    torch = _torch()
    started = time.time()
    fit_options: dict[str, Any] = {
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "progress": progress,
        "mask": m_train,
    }
    teacher = without_teacher = None
    soft: F32 | None = None
    if distill:
        t_weights, t_biases = _fit(
            torch, x_train, y_train, hidden=tuple(int(h) for h in teacher_hidden), **fit_options
        )
        teacher = mlp.Model.from_numpy(t_weights, t_biases, heads, ACTIVATIONS)
        soft = teacher.predict(x_train)
        b_weights, b_biases = _fit(
            torch, x_train, y_train, hidden=tuple(int(h) for h in hidden), **fit_options
        )
        without_teacher = mlp.Model.from_numpy(b_weights, b_biases, heads, ACTIVATIONS)
    weights, biases = _fit(
        torch,
        x_train,
        y_train,
        hidden=tuple(int(h) for h in hidden),
        soft=soft,
        distill_weight=distill_weight,
        regression=[h in REGRESSION_HEADS for h in heads],
        **fit_options,
    )
    rng = np.random.default_rng(seed)
    pick = rng.choice(n_train, size=min(calibration_rows, n_train), replace=False)
    x_calibration = x_train[np.sort(pick)]

    metadata: dict[str, Any] = {
        "feature_spec": spec.to_dict(),
        "blend_weights": {head: DEFAULT_BLEND_WEIGHTS.get(head, 0.0) for head in heads},
        "training": {
            **dict(extra_metadata or {}),
            "log_range": [float(dataset.ts.min()), float(dataset.ts.max())],
            "heldout_from_ts": float(dataset.ts[held_idx].min()),
            "rows": {
                "train": int(n_train),
                "heldout": int(n - n_train),
                "calibration": int(len(x_calibration)),
            },
            "not_viewed_impressions": int(len(dataset) - n),
            "events": dataset.events,
            "duplicate_events": dataset.duplicates,
            "unattributed_events": dataset.unattributed,
            "layers": [spec.width, *(int(h) for h in hidden), len(heads)],
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "torch_version": str(torch.__version__),
            "train_seconds": round(time.time() - started, 3),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }
    model = mlp.Model.from_numpy(
        weights=weights, biases=biases, heads=heads, activations=ACTIVATIONS, metadata=metadata
    )
    quantized = model.quantize(x_calibration)
    metrics = _compare(y_held, model.predict(x_held), quantized.predict(x_held), heads, m_held)
    metadata["training"]["heldout_metrics"] = metrics
    if teacher is not None and without_teacher is not None:
        metrics["teacher"] = _finite_or_none(
            evaluate(y_held, teacher.predict(x_held), heads, m_held)
        )
        base_int8 = without_teacher.quantize(x_calibration)
        base = _compare(
            y_held, without_teacher.predict(x_held), base_int8.predict(x_held), heads, m_held
        )
        metrics["without_teacher"] = {"fp32": base["fp32"], "int8": base["int8"]}
        metadata["training"]["distillation"] = {
            "teacher_layers": [spec.width, *(int(h) for h in teacher_hidden), len(heads)],
            "distill_weight": distill_weight,
            "soft_loss": {h: "mse" if h in REGRESSION_HEADS else "bce" for h in heads},
            "teacher_heldout_auc": {h: metrics["teacher"][h]["auc"] for h in heads},
            "without_teacher_heldout_auc": {
                h: metrics["without_teacher"]["int8"][h]["auc"] for h in heads
            },
        }
        metadata["training"]["train_seconds"] = round(time.time() - started, 3)
    # The metrics belong in the file: build the models again with them (same weights, same
    # calibration rows, so the same int8 model).
    model = mlp.Model.from_numpy(
        weights=weights, biases=biases, heads=heads, activations=ACTIVATIONS, metadata=metadata
    )
    quantized = model.quantize(x_calibration)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        quantized.save(os.fspath(out))
    return TrainResult(
        model,
        quantized,
        spec,
        x_held,
        y_held,
        x_calibration,
        metrics,
        metadata,
        m_held,
        teacher,
        without_teacher,
    )


def distillation_table(metrics: Mapping[str, Any], heads: Sequence[str]) -> list[str]:
    """The held-out AUC per head of the teacher and the student with and without it (int8, as
    served), as text lines; empty without distillation."""
    if "teacher" not in metrics:
        return []
    lines = [
        f"{'head':<11} {'teacher':>8} {'student':>8} {'+teacher':>8} "
        f"{'vs teacher':>10} {'vs alone':>9}   (held-out AUC; students int8)"
    ]
    for head in heads:
        t = metrics["teacher"][head]["auc"]
        alone = metrics["without_teacher"]["int8"][head]["auc"]
        with_t = metrics["int8"][head]["auc"]

        def cell(v: float | None, width: int = 8, sign: str = "") -> str:
            return f"{'n/a':>{width}}" if v is None else f"{v:{sign}{width}.4f}"

        vs_t = None if t is None or with_t is None else with_t - t
        vs_alone = None if alone is None or with_t is None else with_t - alone
        lines.append(
            f"{head:<11} {cell(t)} {cell(alone)} {cell(with_t)} {cell(vs_t, 10, '+')} "
            f"{cell(vs_alone, 9, '+')}"
        )
    return lines


def _compare(
    labels: F32,
    fp32: F32,
    int8: F32,
    heads: Sequence[str],
    mask: npt.NDArray[np.bool_] | None = None,
) -> dict[str, Any]:
    fp32_metrics = evaluate(labels, fp32, heads, mask)
    int8_metrics = evaluate(labels, int8, heads, mask)
    diff = np.abs(fp32.astype(np.float64) - int8.astype(np.float64))
    per_head = {h: float(diff[:, k].max()) if len(diff) else 0.0 for k, h in enumerate(heads)}
    losses = [
        a - b
        for h in heads
        if (a := fp32_metrics[h]["auc"]) is not None and (b := int8_metrics[h]["auc"]) is not None
    ]
    return {
        "fp32": _finite_or_none(fp32_metrics),
        "int8": _finite_or_none(int8_metrics),
        "max_abs_diff": max(per_head.values()) if per_head else 0.0,
        "max_abs_diff_per_head": per_head,
        "max_auc_loss": max(losses) if losses else None,
    }


def _finite_or_none(
    metrics: dict[str, dict[str, float | None]],
) -> dict[str, dict[str, float | None]]:
    """NaN (an empty split) as None: model metadata is strict JSON."""
    return {
        head: {k: v if v is None or math.isfinite(v) else None for k, v in values.items()}
        for head, values in metrics.items()
    }


def _fit(
    torch: Any,
    x: F32,
    y: F32,
    *,
    hidden: tuple[int, ...],
    epochs: int,
    seed: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    progress: bool,
    mask: npt.NDArray[np.bool_] | None = None,
    soft: F32 | None = None,
    distill_weight: float = 0.0,
    regression: Sequence[bool] = (),
) -> tuple[list[F32], list[F32]]:
    """Adam on the mean over heads of each head's mean loss over its known labels; with
    ``soft`` (teacher probabilities), mixed with the soft loss (module doc)."""
    tqdm = importlib.import_module("tqdm").tqdm if progress else None
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sizes = [x.shape[1], *hidden]
        layers: list[Any] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], y.shape[1]))
        net = nn.Sequential(*layers)
        optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
        bce = nn.BCEWithLogitsLoss(reduction="none")
        inputs = torch.from_numpy(np.ascontiguousarray(x))
        targets = torch.from_numpy(np.ascontiguousarray(y))
        known = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)).float()
        teacher = None if soft is None else torch.from_numpy(np.ascontiguousarray(soft))
        is_regression = torch.tensor([bool(r) for r in regression] or [False] * y.shape[1])

        def loss_fn(logits: Any, batch: Any) -> Any:
            hard = bce(logits, targets[batch])
            if known is None:
                loss = hard.mean()
            else:
                weight = known[batch]
                loss = ((hard * weight).sum(0) / weight.sum(0).clamp(min=1.0)).mean()
            if teacher is None:
                return loss
            p = teacher[batch]
            soft_loss = torch.where(
                is_regression, (torch.sigmoid(logits) - p) ** 2, bce(logits, p)
            ).mean()
            return (1.0 - distill_weight) * loss + distill_weight * soft_loss

        generator = torch.Generator().manual_seed(seed)
        steps = math.ceil(len(x) / batch_size)
        bar = (
            tqdm(total=epochs * steps, desc="train", unit="batch", file=sys.stderr, leave=False)
            if tqdm is not None
            else None
        )
        net.train()
        for epoch in range(epochs):
            permutation = torch.randperm(len(x), generator=generator)
            total = 0.0
            for step in range(steps):
                batch = permutation[step * batch_size : (step + 1) * batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(inputs[batch]), batch)
                loss.backward()
                optimiser.step()
                total += float(loss.detach())
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0 or step == steps - 1:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{total / (step + 1):.4f}")
        if bar is not None:
            bar.close()
        linears = [m for m in net if isinstance(m, nn.Linear)]
        weights = [m.weight.detach().numpy().astype(np.float32, copy=True) for m in linears]
        biases = [m.bias.detach().numpy().astype(np.float32, copy=True) for m in linears]
    return weights, biases
