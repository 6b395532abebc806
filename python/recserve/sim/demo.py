"""``recserve demo``: simulated users swipe through a real recserve server and four baselines;
the summary shows whether every swipe makes the feed better, and by how much.

Two engines run the same configuration (``ENGINE_TOML``, written to the output directory):
``recserve`` hears every swipe as it happens; ``frozen`` hears only the users' history, as a
system that retrains its profiles once a day would. Beside them: ``popularity`` (the unseen
item most completed so far), ``random`` and ``oracle`` (the best unseen item by the user's true
expected completion). Every policy meets copies of the same users with the same random streams.

With ``retrain_at`` (``recserve demo --retrain-at 0.5``) the training loop closes inside the run:
the ``recserve`` engine writes its impression log (``RETRAIN_ENGINE_TOML``), and once every user
has made that share of the swipes, ``recserve.retrain.job`` trains a model on the engine's own
log and catalogue and activates it through ``serving.json`` whatever its figures (margin -1: the
point is to compare), and the engine serves it for the rest of the run. A third engine,
``recserve-builtin``, runs the same settings with the built-in model throughout and never
retrains: the same users, the same seeds, so the first half is the same for both and the second
half compares the two models.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from recserve.sim.backends import Backend, Driver, start_backend
from recserve.sim.catalog import SimCatalog, find_kuairand
from recserve.sim.policies import EnginePolicy, OraclePolicy, PopularityPolicy, RandomPolicy
from recserve.sim.session import SessionResult, run_sessions
from recserve.sim.users import make_users

__all__ = ["ENGINE_TOML", "RETRAIN_ENGINE_TOML", "DemoConfig", "run_demo"]

#: The engines' settings. dims 64 is what the built-in ranker reads. Amplification is scaled to
#: the demo's few hundred users (a production tier-0 audience is hundreds of impressions): tiers
#: of 6, 24 and 72 impressions, judged as they go on the excess over the items' peers with
#: weak priors; one exploration slot in ten, for new items that score at least the 30th
#: percentile of the user's regular candidates (8th at tier 1), promoted ones boosted into the
#: regular slots.
ENGINE_TOML = """\
dims = 64
impression_log = false
snapshot_interval_s = 3600
clock = "events"  # simulated time: the same feeds in process and over HTTP
index_threads = 1  # the same ANN graph on every run
shutdown_grace_s = 0  # no load balancer to drain: stop at once

[feed]
precompute = false  # one item per request: no page to compute ahead
explore_slots = 1
explore_pool = 64  # every open item: the relevance gate picks
explore_relevance = 0.3  # test new items on users who may care for them
explore_relevance_decay = 0.25
promoted_boost = 0.3

[amplification]
min_judged = 3
confidence = 0.9
excess_prior = 2
refit_interval_s = 30  # the run lasts 4 minutes of event time
tiers = [
  { budget = 6, min_excess = -0.2 },
  { budget = 24, min_excess = 0.0 },
  { budget = 72, min_excess = 0.0 },
]
priors = { completion = [0.3, 2], skip = [0.5, 2], like = [0.05, 2], share = [0.01, 2] }
"""

#: With ``retrain_at``, the settings of the engine that retrains: ``ENGINE_TOML`` with its
#: impression log on (the training set), a snapshot every 2 s (over HTTP, how the log's
#: catalog.npz reaches the disk; in process the demo asks for one) and serving.json read every
#: 0.2 s (the retrained model serves as soon as it is written). None of these changes a feed.
RETRAIN_ENGINE_TOML = ENGINE_TOML.replace(
    "impression_log = false\nsnapshot_interval_s = 3600\n",
    "impression_log = true  # the retraining's training set\n"
    "snapshot_interval_s = 2  # writes the log's catalog.npz too\n"
    "model_poll_s = 0.2  # serving.json, where the retraining activates its model\n",
)
assert RETRAIN_ENGINE_TOML != ENGINE_TOML

#: The retraining's settings, sized to the demo's log (300 users x 10 swipes: about 3,000
#: served items by the middle of the run): a small network, a few epochs, sampled negatives.
RETRAIN_TRAIN: dict[str, Any] = {"epochs": 8, "hidden": (64, 32), "negatives": 4}
RETRAIN_HOLDOUT = 0.2  # the most recent fifth of the log's viewed impressions: the figures
RETRAIN_VERSION = "retrained"

_DRIVERS = {"http": "over HTTP (recserve serve on 127.0.0.1)", "inprocess": "in process"}
POLICIES = ("recserve", "frozen", "popularity", "random", "oracle")
RETRAIN_POLICIES = ("recserve", "recserve-builtin", "frozen", "popularity", "random", "oracle")
WINDOWS = ((1, 5), (6, 10), (11, 15), (16, 20))


@dataclass(frozen=True)
class DemoConfig:
    users: int = 300
    swipes: int = 20
    history: int = 10  # swipes per user the day before, heard by every policy
    items: int = 5_000
    new_every: int = 500  # swipes of the population between arrivals of new items
    new_items: int = 4
    seed: int = 0
    driver: Driver = "http"
    impression_events: bool = True  # False: the engines' client posts none (what users did only)
    kuairand: Path | None = field(default_factory=find_kuairand)
    # In (0, 1): after this share of the swipes, recserve retrains on its own log and serves
    # the new model for the rest; recserve-builtin keeps the built-in one (module doc).
    retrain_at: float | None = None

    def __post_init__(self) -> None:
        if self.retrain_at is not None:
            if not 0.0 < self.retrain_at < 1.0:
                raise ValueError(f"retrain_at must be in (0, 1), got {self.retrain_at}")
            if not 1 <= self.retrain_after <= self.swipes - 1:
                raise ValueError(
                    f"retrain_at {self.retrain_at} of {self.swipes} swipes leaves no swipe "
                    "before or after the retraining"
                )

    @property
    def retrain_after(self) -> int:
        """The swipe (1-based) after which recserve retrains; 0 without ``retrain_at``."""
        return 0 if self.retrain_at is None else round(self.retrain_at * self.swipes)


class _Progress:
    """A one-line progress bar on a terminal; a line per tenth elsewhere (CI logs)."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        tenth = 10 * done // total
        if not self.tty and tenth == self.shown:
            return
        if self.tty and done != total and done % max(total // 200, 1):
            return
        self.shown = tenth
        bar = "#" * (30 * done // total)
        elapsed = time.monotonic() - self.started
        line = f"{self.label} [{bar:<30}] {done:,}/{total:,} swipes, {elapsed:.0f} s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done == total:
            self.stream.write("\n")
        self.stream.flush()


def _is_open(state: str) -> bool:
    return state.split(":")[0] in ("testing", "promoted")


def _percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {
        "count": len(values),
        "p50_ms": float(np.median(values)),
        "p99_ms": float(np.quantile(values, 0.99)),
    }


def _quality_groups(quality: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.bool_]]:
    low, high = np.quantile(quality, [1 / 3, 2 / 3]) if len(quality) else (0.0, 0.0)
    return {
        "good": quality > high,
        "middle": (quality >= low) & (quality <= high),
        "poor": quality < low,
    }


def _summary(
    config: DemoConfig,
    catalog: SimCatalog,
    result: SessionResult,
    engines: Sequence[EnginePolicy],
    trajectories: dict[int, list[str]],
    stages: dict[str, dict[str, float]],
    elapsed_s: float,
) -> dict[str, Any]:
    """``engines``: recserve's first."""
    policies: dict[str, Any] = {}
    for name in result.completion:
        calibrated = result.calibration(name)
        reached = calibrated[~np.isnan(calibrated)]
        policies[name] = {
            "completion": {
                f"{a}-{b}": result.window(name, a, b) for a, b in WINDOWS if b <= result.swipes
            },
            "completion_all": result.window(name, 1, result.swipes),
            "per_swipe": result.mean_curve(name).round(4).tolist(),
            "calibrated_users": float(len(reached) / len(calibrated)),
            "calibration_median_swipe": float(np.median(reached)) if len(reached) else None,
        }
    window = (6, 10) if result.swipes >= 10 else (1, result.swipes)

    def ratio(a: str, b: str) -> float:
        return result.window(a, *window) / max(result.window(b, *window), 1e-12)

    quality = catalog.quality[result.new_items]
    impressions = result.impressions["recserve"]
    final = [
        trajectories[i][-1] if trajectories.get(i) else "testing:0"
        for i in result.new_items.tolist()
    ]
    amplification: dict[str, dict[str, Any]] = {}
    mean_impressions: dict[str, float] = {}
    for group, mask in _quality_groups(quality).items():
        mean_impressions[group] = float(impressions[mask].mean()) if mask.any() else 0.0
        states = Counter(final[i].split(":")[0] for i in np.flatnonzero(mask))
        amplification[group] = {
            "items": int(mask.sum()),
            "mean_impressions": mean_impressions[group],
            "states": dict(sorted(states.items())),
        }
    good, poor = mean_impressions["good"], mean_impressions["poor"]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "catalogue": {
            "source": catalog.source,
            "items": len(catalog),
            "new_items": len(result.new_items),
        },
        "window": f"{window[0]}-{window[1]}",
        "ratios": {
            "recserve_vs_frozen": ratio("recserve", "frozen"),
            "recserve_vs_random": ratio("recserve", "random"),
            "recserve_vs_popularity": ratio("recserve", "popularity"),
            "recserve_vs_oracle": ratio("recserve", "oracle"),
            "good_vs_poor_new_item_impressions": good / poor if poor else None,
            # items arriving during the run are by new creators (sim.catalog.add_new)
            "new_creator_impression_share": result.new_item_share("recserve"),
        },
        "policies": policies,
        "sources": {
            p.name: {
                s: {"served": len(v), "completion": float(np.mean(v))}
                for s, v in sorted(p.by_source.items())
            }
            for p in engines
        },
        "amplification": amplification,
        "latency": {
            "client": {
                p.name: {k: _percentiles(v) for k, v in p.latency_s.items() if v} for p in engines
            },
            "server_stages": stages,
        },
        "elapsed_s": elapsed_s,
    }


def _await_training_set(
    backend: Backend, log_dir: Path, items: int, last_event: str, timeout_s: float = 60.0
) -> None:
    """Until the engine's impression log on disk holds ``last_event`` (its flush thread writes
    every second) and its catalog.npz all ``items`` (written at a snapshot: asked for in
    process, the server's own every ``snapshot_interval_s`` over HTTP). What the retraining
    reads is then everything the engine heard, whatever the machine's speed."""
    from recserve.train.log import Event, iter_records, read_catalog

    backend.snapshot()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            complete = len(read_catalog(log_dir).item) >= items and any(
                isinstance(r, Event) and r.event_id == last_event for r in iter_records(log_dir)
            )
        except (FileNotFoundError, ValueError):  # not written yet
            complete = False
        if complete:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{log_dir} did not hold the engine's log and catalogue within {timeout_s:.0f} s"
            )
        time.sleep(0.1)


def _await_model(backend: Backend, version: str, timeout_s: float = 60.0) -> None:
    """Until the engine serves ``version`` (it reads serving.json every ``model_poll_s``)."""
    deadline = time.monotonic() + timeout_s
    while backend.models()["active"] != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the engine did not serve {version} within {timeout_s:.0f} s")
        time.sleep(0.05)


def _retrain(
    config: DemoConfig, live: EnginePolicy, data_dir: Path, out: Path, items: int
) -> dict[str, Any]:
    """Trains on the live engine's own log, activates the model whatever its figures, and
    waits until the engine serves it; returns what the summary says of it. The model is
    copied to ``out`` (the engine's data directory is removed after the run)."""
    from recserve.retrain.job import RetrainOptions, retrain
    from recserve.train.log import Event, Impression, iter_records

    started = time.monotonic()
    log_dir = data_dir / "impressions"
    _await_training_set(live.backend, log_dir, items, f"e{live.posted}")
    kinds = Counter(type(r).__name__ for r in iter_records(log_dir))
    options = RetrainOptions(
        holdout=RETRAIN_HOLDOUT,
        metric="auc:complete",
        margin=-1.0,  # activated whatever its figures: the second half compares the two models
        trial_share=0.0,
        version=RETRAIN_VERSION,
        config=out / "engine-retrain.toml",
        train={**RETRAIN_TRAIN, "seed": config.seed},
    )
    report = retrain(data_dir, options)
    if report.decision != "activated":  # only a candidate with no AUC at all is not
        raise RuntimeError(f"the retrained model was not activated: {report.reason}")
    _await_model(live.backend, report.version)
    kept = out / f"{report.version}.rsm"
    shutil.copyfile(report.model_path, kept)
    report.model_path = str(kept)
    return {
        "at": config.retrain_at,
        "after_swipe": config.retrain_after,
        "log": {
            "impressions": kinds[Impression.__name__],
            "events": kinds[Event.__name__],
        },
        "options": {
            "holdout": options.holdout,
            "metric": options.metric,
            "margin": options.margin,
            "trial_share": options.trial_share,
            "train": {k: list(v) if isinstance(v, tuple) else v for k, v in options.train.items()},
        },
        "report": report.to_dict(),
        "seconds": time.monotonic() - started,
    }


def _compare(
    config: DemoConfig,
    result: SessionResult,
    engines: Sequence[EnginePolicy],
    retrained: dict[str, Any],
) -> dict[str, Any]:
    """The retraining's part of the summary: the two models on each half, and which model
    ranked each half's feeds."""
    k, n = config.retrain_after, result.swipes
    first_window = (k + 6, min(k + 10, n)) if k + 6 <= n else (k + 1, n)
    halves = {"first_half": (1, k), "second_half": (k + 1, n), "second_half_6_10": first_window}
    names = ("recserve", "recserve-builtin")
    out = dict(retrained)
    for half, (a, b) in halves.items():
        completion = {name: result.window(name, a, b) for name in names}
        out[half] = {
            "swipes": f"{a}-{b}",
            "completion": completion,
            "ratio": completion["recserve"] / max(completion["recserve-builtin"], 1e-12),
        }
    pages = config.users * k  # one page a swipe
    out["served"] = {
        e.name: {
            "first_half": dict(Counter(e.model_versions[:pages])),
            "second_half": dict(Counter(e.model_versions[pages:])),
        }
        for e in engines
        if e.name in names
    }
    return out


def run_demo(config: DemoConfig, out: Path, *, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Runs the demo, writes ``engine.toml``, ``summary.json`` and the plots into ``out``, and
    returns the summary. With ``retrain_at``, also ``engine-retrain.toml`` (the retraining
    engine's settings) and the retrained model, ``retrained.rsm``."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine.toml").write_text(ENGINE_TOML)
    retraining = config.retrain_at is not None
    if retraining:
        (out / "engine-retrain.toml").write_text(RETRAIN_ENGINE_TOML)
    catalog = SimCatalog(config.items, dims=64, seed=config.seed, kuairand=config.kuairand)
    users = make_users(config.users, catalog, seed=config.seed + 1)
    stream.write(
        f"catalogue: {len(catalog):,} items ({catalog.source}); {config.users} users, "
        f"{config.history} swipes of history each, then {config.swipes} swipes; "
        f"engines reached {_DRIVERS[config.driver]}\n"
    )
    if retraining:
        stream.write(
            f"after swipe {config.retrain_after}, recserve retrains on its own impression log "
            "and serves the new model to everyone for the rest of the run, whatever its "
            "figures (to compare); recserve-builtin keeps the built-in model\n"
        )
    setups = [("recserve", False, "engine-retrain.toml" if retraining else "engine.toml")]
    if retraining:
        setups.append(("recserve-builtin", False, "engine.toml"))
    setups.append(("frozen", True, "engine.toml"))
    retrained: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="recserve-demo-") as scratch:
        root = Path(scratch)
        engines: list[EnginePolicy] = []
        try:
            for name, is_frozen, toml in setups:
                backend = start_backend(config.driver, out / toml, root / name)
                engines.append(
                    EnginePolicy(
                        name,
                        catalog,
                        backend,
                        frozen=is_frozen,
                        impression_events=config.impression_events,
                    )
                )
            live = engines[0]
            trajectories: dict[int, list[str]] = {}

            def after_round(s: int) -> None:  # where each new item stands after swipe s
                arrived = np.arange(config.items, len(catalog))
                for item in arrived.tolist():
                    trajectories.setdefault(item, [])
                # Stopped and graduated are final: ask again only about items still open.
                still_open = np.array(
                    [i for i, states in trajectories.items() if not states or _is_open(states[-1])],
                    dtype=np.int64,
                )
                latest = dict(zip(still_open.tolist(), live.tier_states(still_open), strict=True))
                for item, states in trajectories.items():
                    states.append(latest.get(item, states[-1] if states else "testing:0"))
                if retraining and s + 1 == config.retrain_after:
                    stream.write(f"retraining on recserve's log after swipe {s + 1} ...\n")
                    retrained.update(_retrain(config, live, root / "recserve", out, len(catalog)))
                    report = retrained["report"]
                    stream.write(
                        f"serving {report['version']} ({report['decision']}, "
                        f"{retrained['seconds']:.0f} s)\n"
                    )

            result = run_sessions(
                catalog,
                users,
                [
                    *engines,
                    PopularityPolicy(catalog),
                    RandomPolicy(catalog, config.seed + 2),
                    OraclePolicy(catalog),
                ],
                swipes=config.swipes,
                history=config.history,
                new_every=config.new_every,
                new_items=config.new_items,
                seed=config.seed + 3,
                progress=_Progress(stream, "swiping"),
                after_round=after_round,
            )
            stages = {stage: _percentiles(v) for stage, v in live.stage_s.items()}
        finally:
            for engine in engines:
                engine.close()
    summary = _summary(
        config, catalog, result, engines, trajectories, stages, time.monotonic() - started
    )
    if retraining:
        summary["retrain"] = _compare(config, result, engines, retrained)
    summary["trajectories"] = {
        catalog.id_of(i): {
            "quality": float(catalog.quality[i]),
            "arrived_after_swipe": int(catalog.created_step[i]),
            "states": states,
        }
        for i, states in trajectories.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    from recserve.sim.plots import write_plots  # matplotlib only when plotting

    write_plots(summary, out)
    return summary
