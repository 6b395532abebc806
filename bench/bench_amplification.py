"""Does amplification find the good new videos? The demo (in process, same engines and users)
over several seeds, three ways: amplification as the demo configures it, the same with a client
that posts no impression events (only watches, likes, skips...), and amplification off (no
exploration slots, no boost for promoted items).

    python bench/bench_amplification.py                 # seeds 0-3: about five minutes, 2 cores
    python bench/bench_amplification.py --seeds 0,1

Per run one JSON line (seed, variant, new items' mean impressions per third of hidden quality,
their states, good/poor ratio, the new creators' share of impressions, live completion, seconds,
ISA, CPU, git sha), then the table with ratios to the run with amplification off. Benchmarks
never assert.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, git_sha  # noqa: E402
from recserve import simd  # noqa: E402
from recserve.sim import demo  # noqa: E402


def _engine_toml(variant: str) -> str:
    """The demo's settings; for "off", with no exploration slots and no boost (the [feed]
    keys replaced, not repeated)."""
    if variant != "off":
        return demo.ENGINE_TOML
    kept = [
        line
        for line in demo.ENGINE_TOML.splitlines()
        if not line.startswith(("explore_slots", "promoted_boost"))
    ]
    at = kept.index("[feed]") + 1
    return "\n".join([*kept[:at], "explore_slots = 0", "promoted_boost = 0", *kept[at:]]) + "\n"


def run(seed: int, variant: str, scratch: Path) -> dict[str, object]:
    config = demo.DemoConfig(driver="inprocess", seed=seed, impression_events=variant != "quiet")
    saved = demo.ENGINE_TOML
    demo.ENGINE_TOML = _engine_toml(variant)
    try:
        started = time.monotonic()
        summary = demo.run_demo(config, scratch / f"{variant}-{seed}", stream=io.StringIO())
    finally:
        demo.ENGINE_TOML = saved
    groups = summary["amplification"]
    return {
        "seed": seed,
        "variant": variant,
        "impressions": {g: round(a["mean_impressions"], 2) for g, a in groups.items()},
        "states": {g: a["states"] for g, a in groups.items()},
        "good_vs_poor": summary["ratios"]["good_vs_poor_new_item_impressions"],
        "new_creator_share": summary["ratios"]["new_creator_impression_share"],
        "completion": summary["policies"]["recserve"]["completion_all"],
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated demo seeds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sha, isa, cpu = git_sha(), simd.active_isa(), cpu_model()
    print(f"# bench_amplification: {cpu}; kernels {isa}; git {sha}; seeds {seeds}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-amplification-") as scratch:
        for seed in seeds:
            for variant in ("on", "quiet", "off"):
                row = run(seed, variant, Path(scratch)) | {"isa": isa, "cpu": cpu, "git_sha": sha}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print_table(rows, seeds)


def print_table(rows: list[dict], seeds: list[int]) -> None:
    by = {(r["seed"], r["variant"]): r for r in rows}
    print("\nnew items' mean impressions by hidden quality (thirds); completion: the live engine's")
    print(
        f"{'seed':>4} {'variant':<8} {'good':>6} {'middle':>7} {'poor':>6} {'good/poor':>10} "
        f"{'new creators':>13} {'completion':>11} {'vs off':>7}"
    )
    for seed in seeds:
        off = by[(seed, "off")]["completion"]
        for variant in ("on", "quiet", "off"):
            r = by[(seed, variant)]
            ratio = r["good_vs_poor"]
            print(
                f"{seed:>4} {variant:<8} {r['impressions']['good']:>6.1f} "
                f"{r['impressions']['middle']:>7.1f} {r['impressions']['poor']:>6.1f} "
                f"{'-' if ratio is None else f'×{ratio:.2f}':>10} "
                f"{100 * (r['new_creator_share'] or 0):>12.1f}% "
                f"{r['completion']:>11.4f} {r['completion'] / off:>6.3f}×"
            )
    for variant in ("on", "quiet", "off"):
        ratios = [by[(s, variant)]["good_vs_poor"] for s in seeds]
        known = [r for r in ratios if r]
        completion = [by[(s, variant)]["completion"] / by[(s, "off")]["completion"] for s in seeds]
        print(
            f"{variant:<8} good/poor median ×{statistics.median(known):.2f} "
            f"(min ×{min(known):.2f}, max ×{max(known):.2f}); completion vs off: median "
            f"×{statistics.median(completion):.3f}"
        )


if __name__ == "__main__":
    main()
