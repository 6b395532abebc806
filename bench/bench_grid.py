"""The demo across many worlds: recserve against frozen, popularity, random, item-to-item and
the oracle in each of ``recserve.sim.grid.WORLDS`` (topics, embedding noise, mood drift, page
size, users without history). A thin wrapper over ``recserve demo --grid``.

    python bench/bench_grid.py            # 60 users per world: one to two minutes on 2 cores
    python bench/bench_grid.py --full     # 300 users per world, as `recserve demo --grid`

One JSON line per world (its knobs, every policy's completion per swipe window, recserve's
ratios to the best peer and to the oracle, seconds, ISA, CPU, git sha), then the table.
Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, git_sha  # noqa: E402
from recserve import simd  # noqa: E402
from recserve.sim.grid import GridConfig, print_grid, run_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="300 users per world")
    parser.add_argument("--users", type=int, default=None, help="per world (default 60; 300)")
    parser.add_argument("--swipes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep summary.json here")
    args = parser.parse_args()
    users = args.users if args.users is not None else (300 if args.full else 60)
    config = GridConfig(users=users, swipes=args.swipes, seed=args.seed)
    sha, isa, cpu = git_sha(), simd.active_isa(), cpu_model()
    print(f"# bench_grid: {cpu}; kernels {isa}; git {sha}; {users} users per world")
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as scratch:
        out = args.out if args.out is not None else Path(scratch)
        summary = run_grid(config, out)
    for world in summary["worlds"]:
        line = {
            "world": world["world"],
            "users": users,
            "swipes": args.swipes,
            "seed": args.seed,
            "completion": {n: p["completion"] for n, p in world["policies"].items()},
            "judged": world["judged"],
            "seconds": round(world["elapsed_s"], 1),
            "isa": isa,
            "cpu": cpu,
            "git_sha": sha,
        }
        print(json.dumps(line), flush=True)
    print_grid(summary)


if __name__ == "__main__":
    main()
