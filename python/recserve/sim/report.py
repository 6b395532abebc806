"""The demo's summary table, printed from ``summary.json``'s dictionary."""

from __future__ import annotations

from typing import Any

__all__ = ["print_summary"]


def _ms(v: dict[str, float]) -> str:
    return f"{v['p50_ms']:7.2f} {v['p99_ms']:7.2f}"


def print_summary(summary: dict[str, Any]) -> None:
    policies = summary["policies"]
    windows = list(next(iter(policies.values()))["completion"])
    print("\nmean completion per swipe window (watched fraction, 1 = every video watched through)")
    header = "".join(f"{'swipes ' + w:>14}" for w in windows)
    print(f"{'policy':<12}{header}   calibrated users   median swipe")
    for name, p in policies.items():
        cells = "".join(f"{p['completion'][w]:14.3f}" for w in windows)
        median = p["calibration_median_swipe"]
        print(
            f"{name:<12}{cells}   {100 * p['calibrated_users']:15.0f} %   "
            f"{median if median is not None else '-':>12}"
        )
    r = summary["ratios"]
    window = summary["window"]
    print(
        f"\nswipes {window}: recserve / frozen ×{r['recserve_vs_frozen']:.2f}, "
        f"/ random ×{r['recserve_vs_random']:.2f}, "
        f"/ popularity ×{r['recserve_vs_popularity']:.2f}, "
        f"/ oracle ×{r['recserve_vs_oracle']:.2f}"
    )
    print("(calibrated: the user's completion over 3 swipes reached 80 % of the oracle's)")

    print("\nnew items arriving during the run, by hidden quality (thirds):")
    for group, a in summary["amplification"].items():
        states = ", ".join(f"{k} {v}" for k, v in a["states"].items())
        print(
            f"  {group:<7} {a['items']:3d} items  {a['mean_impressions']:6.1f} impressions each"
            f"   now: {states}"
        )
    good_vs_poor = r["good_vs_poor_new_item_impressions"]
    if good_vs_poor is not None:
        print(f"  good / poor impressions ×{good_vs_poor:.1f}")
    share = r.get("new_creator_impression_share")
    if share is not None:
        print(f"  new creators' share of recserve's impressions {100 * share:.1f} %")

    print("\nlatency during the run (ms)        p50     p99")
    for stage, v in summary["latency"]["server_stages"].items():
        print(f"  feed stage {stage:<22} {_ms(v)}")
    for policy, kinds in summary["latency"]["client"].items():
        for kind, v in kinds.items():
            print(f"  {policy + ' ' + kind + ' request':<33} {_ms(v)}")
    print(f"\nfinished in {summary['elapsed_s']:.0f} s")
