"""``recserve demo --grid``: the demo across many worlds, so a loop that wins in one world only
shows as tuned.

Each world is the demo's simulation with five knobs turned (``World``): the number of hidden
topics of a synthetic catalogue, the noise of the embeddings the engine sees, how far a user's
mood drifts per swipe, the page size (the user swipes through a whole page before the next is
asked for, so a page of 10 cannot adapt inside itself) and the share of users with no history.
``WORLDS`` holds ten of them: the demo's defaults, each axis's extremes on their own or in
pairs, and an easy and a hard corner. The catalogue is synthetic even where the KuaiRand video
table is present, because its topics are its tags and their number cannot be set.

Every world runs the same six policies on copies of the same users: ``recserve`` (the engine in
process, hearing every swipe), ``frozen`` (the same engine hearing only the history),
``popularity``, ``random``, ``item2item`` (online co-occurrence over completions) and
``oracle``. The engines run ``demo.ENGINE_TOML`` on the events' clock with a one-thread index
build, so a seed gives the same table on any machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from recserve.sim.backends import InProcessBackend
from recserve.sim.catalog import SimCatalog
from recserve.sim.demo import ENGINE_TOML, WINDOWS, _Progress
from recserve.sim.policies import (
    EnginePolicy,
    ItemToItemPolicy,
    OraclePolicy,
    PopularityPolicy,
    RandomPolicy,
)
from recserve.sim.session import run_sessions
from recserve.sim.users import make_users

__all__ = ["GRID_POLICIES", "WORLDS", "GridConfig", "World", "print_grid", "run_grid"]

GRID_POLICIES = ("recserve", "frozen", "popularity", "random", "item2item", "oracle")
HEADLINE = ((6, 10), (16, 20))  # the windows every world is judged on


@dataclass(frozen=True)
class World:
    """One simulated world. The defaults are the demo's (on a synthetic catalogue)."""

    name: str
    topics: int = 40  # hidden topics of the catalogue
    # embedding noise (SimCatalog). An item's 10 nearest neighbours by embedding share its
    # topic: 99.6 % of them at 0.35, 94 % at 0.8, 52 % at 1.5 (40 topics)
    noise: float = 0.35
    drift: float = 0.08  # the norm of a mood's step per swipe (SimUser.drift)
    page: int = 1  # items per feed request
    cold: float = 0.0  # the share of users with no history


WORLDS = (
    World("default"),
    World("10 topics, pages of 5", topics=10, page=5),
    World("200 topics, half cold", topics=200, cold=0.5),
    World("clean embeddings, pages of 10", noise=0.1, page=10),
    World("noisy embeddings", noise=1.5),
    World("still moods, pages of 5, half cold", drift=0.02, page=5, cold=0.5),
    World("fast moods", drift=0.2),
    World("all cold", cold=1.0),
    World("easy: 10 topics, clean, still, pages of 10", topics=10, noise=0.1, drift=0.02, page=10),
    World(
        "hard: 200 topics, noisy, fast, pages of 10, all cold",
        topics=200,
        noise=1.5,
        drift=0.2,
        page=10,
        cold=1.0,
    ),
)


@dataclass(frozen=True)
class GridConfig:
    users: int = 300  # per world, as the demo
    swipes: int = 20
    history: int = 10  # swipes of history per user who has any
    items: int = 5_000
    new_every: int = 500
    new_items: int = 4
    seed: int = 0
    worlds: tuple[World, ...] = WORLDS


def _windows(swipes: int) -> list[tuple[int, int]]:
    return [w for w in HEADLINE if w[1] <= swipes] or [(1, swipes)]


def _run_world(
    world: World, config: GridConfig, engine_toml: Path, scratch: Path, stream: TextIO, label: str
) -> dict[str, Any]:
    started = time.monotonic()
    seed = config.seed
    catalog = SimCatalog(
        config.items, dims=64, noise=world.noise, seed=seed, kuairand=None, topics=world.topics
    )
    users = make_users(config.users, catalog, seed=seed + 1, drift=world.drift)
    n_cold = round(world.cold * config.users)
    cold = {int(u) for u in np.random.default_rng(seed + 4).permutation(config.users)[:n_cold]}
    engines: list[EnginePolicy] = []
    try:
        for name, is_frozen in (("recserve", False), ("frozen", True)):
            backend = InProcessBackend(engine_toml, scratch / name)
            engines.append(EnginePolicy(name, catalog, backend, frozen=is_frozen))
        result = run_sessions(
            catalog,
            users,
            [
                *engines,
                PopularityPolicy(catalog),
                RandomPolicy(catalog, seed + 2),
                ItemToItemPolicy(catalog),
                OraclePolicy(catalog),
            ],
            swipes=config.swipes,
            history=config.history,
            new_every=config.new_every,
            new_items=config.new_items,
            seed=seed + 3,
            page_size=world.page,
            cold=cold,
            progress=_Progress(stream, label),
        )
    finally:
        for engine in engines:
            engine.close()
    windows = _windows(config.swipes)
    policies: dict[str, dict[str, Any]] = {
        name: {
            "completion": {
                f"{a}-{b}": result.window(name, a, b) for a, b in WINDOWS if b <= config.swipes
            }
            | {f"{a}-{b}": result.window(name, a, b) for a, b in windows},
            "completion_all": result.window(name, 1, config.swipes),
        }
        for name in GRID_POLICIES
    }
    judged: dict[str, Any] = {}
    for a, b in windows:
        key = f"{a}-{b}"
        mine = policies["recserve"]["completion"][key]
        peers = {n: p["completion"][key] for n, p in policies.items() if n not in ("recserve",)}
        oracle = peers.pop("oracle")
        best = max(peers, key=lambda n: peers[n])
        judged[key] = {
            "best_peer": best,
            "vs_best_peer": mine / max(peers[best], 1e-12),
            "vs_oracle": mine / max(oracle, 1e-12),
            "recserve_wins": bool(mine > peers[best]),
        }
    live = engines[0]
    return {
        "world": asdict(world),
        "cold_users": n_cold,
        "catalogue": {"items": len(catalog), "topics": len(catalog._topic_centres)},
        "policies": policies,
        "judged": judged,
        "recserve_sources": {
            s: {"served": len(v), "completion": float(np.mean(v))}
            for s, v in sorted(live.by_source.items())
        },
        "elapsed_s": time.monotonic() - started,
    }


def run_grid(config: GridConfig, out: Path, *, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Runs every world one after the other, writes ``engine.toml`` and ``summary.json`` into
    ``out`` and returns the summary."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    engine_toml = out / "engine.toml"
    engine_toml.write_text(ENGINE_TOML)
    stream.write(
        f"grid: {len(config.worlds)} worlds; each {config.items:,} synthetic items, "
        f"{config.users} users, {config.history} swipes of history (none for cold users), "
        f"then {config.swipes} swipes; engines in process\n"
    )
    worlds = []
    for w, world in enumerate(config.worlds, 1):
        with tempfile.TemporaryDirectory(prefix="recserve-grid-") as scratch:
            label = f"world {w}/{len(config.worlds)}"
            worlds.append(_run_world(world, config, engine_toml, Path(scratch), stream, label))
    summary: dict[str, Any] = {
        "config": asdict(config) | {"worlds": [asdict(w) for w in config.worlds]},
        "worlds": worlds,
        "averages": _averages(worlds),
        "elapsed_s": time.monotonic() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _averages(worlds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per window: each policy's completion and recserve's ratios averaged over the worlds
    (each world weighs the same), and in how many worlds recserve beat every peer."""
    out: dict[str, Any] = {}
    for key in worlds[0]["judged"]:
        out[key] = {
            "completion": {
                name: float(np.mean([w["policies"][name]["completion"][key] for w in worlds]))
                for name in GRID_POLICIES
            },
            "vs_best_peer": float(np.mean([w["judged"][key]["vs_best_peer"] for w in worlds])),
            "vs_oracle": float(np.mean([w["judged"][key]["vs_oracle"] for w in worlds])),
            "worlds_won": sum(w["judged"][key]["recserve_wins"] for w in worlds),
        }
    return out


_SHORT = {"popularity": "popular"}


def _times(ratio: float) -> str:
    return f"×{ratio:.2f}"


def print_grid(summary: dict[str, Any], stream: TextIO | None = None) -> None:
    """One table: per world and headline window, every policy's mean completion, the best
    policy other than recserve and the oracle, and recserve's ratio to it and to the oracle
    (on standard output unless ``stream`` is given)."""
    stream = sys.stdout if stream is None else stream
    worlds = summary["worlds"]
    names = [_SHORT.get(n, n) for n in GRID_POLICIES]
    cells = "".join(f"{n:>10}" for n in names)
    head = f"{'#':>2} {'topics':>6} {'noise':>5} {'drift':>5} {'page':>4} {'cold':>5} {'swipes':>6}"
    print("\nmean completion per world and swipe window (1 = every video watched through)",
          file=stream)
    print(f"{head}{cells}   {'best peer':<10} {'/peer':>6} {'/oracle':>7}", file=stream)
    for i, w in enumerate(worlds, 1):
        world = w["world"]
        for j, (key, judged) in enumerate(w["judged"].items()):
            left = (
                f"{i:>2} {world['topics']:>6} {world['noise']:>5.2f} {world['drift']:>5.2f} "
                f"{world['page']:>4} {100 * world['cold']:>4.0f}%"
                if j == 0
                else " " * 34
            )
            values = "".join(
                f"{w['policies'][n]['completion'][key]:>10.3f}" for n in GRID_POLICIES
            )
            mark = "" if judged["recserve_wins"] else " *"
            best = _SHORT.get(judged["best_peer"], judged["best_peer"])
            print(
                f"{left} {key:>6}{values}   {best:<10}"
                f" {_times(judged['vs_best_peer']):>6} {_times(judged['vs_oracle']):>7}{mark}",
                file=stream,
            )
    for key, avg in summary["averages"].items():
        values = "".join(f"{avg['completion'][n]:>10.3f}" for n in GRID_POLICIES)
        print(
            f"{'grid average':<34} {key:>6}{values}   {'':<10} {_times(avg['vs_best_peer']):>6}"
            f" {_times(avg['vs_oracle']):>7}",
            file=stream,
        )
    print("", file=stream)
    for i, w in enumerate(worlds, 1):
        print(f"  {i:>2} {w['world']['name']}", file=stream)
    won = ", ".join(
        f"swipes {key}: {avg['worlds_won']}/{len(worlds)} worlds"
        for key, avg in summary["averages"].items()
    )
    print(f"\nrecserve beats every other policy but the oracle in {won} (* where not)", file=stream)
    first = next(iter(summary["averages"]))
    print(
        f"recserve / oracle over swipes {first}, averaged over the worlds: "
        f"×{summary['averages'][first]['vs_oracle']:.2f}",
        file=stream,
    )
    print(f"finished in {summary['elapsed_s']:.0f} s", file=stream)
