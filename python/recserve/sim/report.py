"""The demo's summary table, printed from ``summary.json``'s dictionary."""

from __future__ import annotations

from typing import Any

__all__ = ["print_retrain", "print_summary"]


def _ms(v: dict[str, float]) -> str:
    return f"{v['p50_ms']:7.2f} {v['p99_ms']:7.2f}"


def _figure(value: object) -> str:
    return f"{value:10.4f}" if isinstance(value, float) else f"{'n/a':>10}"


def print_retrain(r: dict[str, Any]) -> None:
    """The retraining (``recserve demo --retrain-at``): its figures, and the two models on the
    run's two halves."""
    report, log = r["report"], r["log"]
    train = r["options"]["train"]
    hidden = ",".join(str(h) for h in train.get("hidden", ()))
    print(
        f"\nretrained after swipe {r['after_swipe']} on recserve's own log "
        f"({log['impressions']:,} impressions served, {log['events']:,} events; "
        f"{train.get('epochs')} epochs, hidden {hidden}, {train.get('negatives')} negatives, "
        f"last {r['options']['holdout']:.0%} held out), {r['seconds']:.0f} s"
    )
    print(f"  {'':<18}{'retrained':>10}{report['active']:>10}")
    for head, value in report["candidate"]["auc"].items():
        print(
            f"  {'AUC ' + head:<18}{_figure(value)}{_figure(report['incumbent']['auc'].get(head))}"
        )
    print(
        f"  {'HR@10':<18}{_figure(report['candidate']['hr@10'])}"
        f"{_figure(report['incumbent']['hr@10'])}"
    )
    print(
        f"  {report['decision']} for everyone whatever its figures (margin "
        f"{r['options']['margin']:g}, no trial): the second half compares the two models"
    )
    print(f"\n{'completion':<38}{'retrained':>10}{'built-in':>10}{'ratio':>9}")
    labels = {
        "first_half": "first half (both built-in)",
        "second_half": "second half",
        "second_half_6_10": "second half, its swipes 6-10",
    }
    for key, label in labels.items():
        h = r[key]
        if key == "second_half_6_10" and h["swipes"] == r["second_half"]["swipes"]:
            continue  # a second half shorter than 6 swipes
        c = h["completion"]
        print(
            f"  {label + ' (' + h['swipes'] + ')':<36}{c['recserve']:10.3f}"
            f"{c['recserve-builtin']:10.3f}   ×{h['ratio']:.3f}"
        )
    for name, halves in r["served"].items():
        shown = "; ".join(
            f"{half.replace('_', ' ')}: " + ", ".join(f"{v} {n:,}" for v, n in sorted(c.items()))
            for half, c in halves.items()
        )
        print(f"  {name} feeds ranked by  {shown}")


def print_summary(summary: dict[str, Any]) -> None:
    policies = summary["policies"]
    windows = list(next(iter(policies.values()))["completion"])
    print("\nmean completion per swipe window (watched fraction, 1 = every video watched through)")
    header = "".join(f"{'swipes ' + w:>14}" for w in windows)
    width = max(12, *(len(name) + 1 for name in policies))  # recserve-builtin: 17
    print(f"{'policy':<{width}}{header}   calibrated users   median swipe")
    for name, p in policies.items():
        cells = "".join(f"{p['completion'][w]:14.3f}" for w in windows)
        median = p["calibration_median_swipe"]
        print(
            f"{name:<{width}}{cells}   {100 * p['calibrated_users']:15.0f} %   "
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
    if "retrain" in summary:
        print_retrain(summary["retrain"])

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
