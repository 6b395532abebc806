"""``recserve demo``: simulated users swipe through a real recserve server and four baselines;
the summary shows whether every swipe makes the feed better, and by how much.

Two engines run the same configuration (``ENGINE_TOML``, written to the output directory):
``recserve`` hears every swipe as it happens; ``frozen`` hears only the users' history, as a
system that retrains its profiles once a day would. Beside them: ``popularity`` (the unseen
item most completed so far), ``random`` and ``oracle`` (the best unseen item by the user's true
expected completion). Every policy meets copies of the same users with the same random streams.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from recserve.sim.backends import Driver, start_backend
from recserve.sim.catalog import SimCatalog, find_kuairand
from recserve.sim.policies import EnginePolicy, OraclePolicy, PopularityPolicy, RandomPolicy
from recserve.sim.session import SessionResult, run_sessions
from recserve.sim.users import make_users

__all__ = ["ENGINE_TOML", "DemoConfig", "run_demo"]

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

_DRIVERS = {"http": "over HTTP (recserve serve on 127.0.0.1)", "inprocess": "in process"}
POLICIES = ("recserve", "frozen", "popularity", "random", "oracle")
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
    live: EnginePolicy,
    frozen: EnginePolicy,
    trajectories: dict[int, list[str]],
    stages: dict[str, dict[str, float]],
    elapsed_s: float,
) -> dict[str, Any]:
    policies: dict[str, Any] = {}
    for name in POLICIES:
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
            for p in (live, frozen)
        },
        "amplification": amplification,
        "latency": {
            "client": {
                p.name: {k: _percentiles(v) for k, v in p.latency_s.items() if v}
                for p in (live, frozen)
            },
            "server_stages": stages,
        },
        "elapsed_s": elapsed_s,
    }


def run_demo(config: DemoConfig, out: Path, *, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Runs the demo, writes ``engine.toml``, ``summary.json`` and the plots into ``out``, and
    returns the summary."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine.toml").write_text(ENGINE_TOML)
    catalog = SimCatalog(config.items, dims=64, seed=config.seed, kuairand=config.kuairand)
    users = make_users(config.users, catalog, seed=config.seed + 1)
    stream.write(
        f"catalogue: {len(catalog):,} items ({catalog.source}); {config.users} users, "
        f"{config.history} swipes of history each, then {config.swipes} swipes; "
        f"engines reached {_DRIVERS[config.driver]}\n"
    )
    with tempfile.TemporaryDirectory(prefix="recserve-demo-") as scratch:
        root = Path(scratch)
        engines: list[EnginePolicy] = []
        try:
            for name, is_frozen in (("recserve", False), ("frozen", True)):
                backend = start_backend(config.driver, out / "engine.toml", root / name)
                engines.append(
                    EnginePolicy(
                        name,
                        catalog,
                        backend,
                        frozen=is_frozen,
                        impression_events=config.impression_events,
                    )
                )
            live, frozen = engines
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

            result = run_sessions(
                catalog,
                users,
                [
                    live,
                    frozen,
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
        config, catalog, result, live, frozen, trajectories, stages, time.monotonic() - started
    )
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
