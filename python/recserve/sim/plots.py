"""The demo's figures, drawn from its ``summary.json`` alone (so they can be redrawn from a saved
summary): completion per swipe, calibration, amplification trajectories, latency per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["write_plots"]

COLOURS = {
    "recserve": "#d62728",
    "recserve-builtin": "#ff9896",  # recserve demo --retrain-at: the model never retrained
    "frozen": "#1f77b4",
    "popularity": "#9467bd",
    "random": "#7f7f7f",
    "oracle": "#2ca02c",
}
LABELS = {
    "recserve": "recserve (real-time updates)",
    "recserve-builtin": "recserve, built-in model throughout",
    "frozen": "frozen profiles (daily batch)",
    "popularity": "popularity",
    "random": "random",
    "oracle": "oracle (true taste)",
}


def _completion(summary: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    for name, policy in summary["policies"].items():
        curve = policy["per_swipe"]
        ax.plot(
            range(1, len(curve) + 1),
            curve,
            marker="o",
            markersize=3,
            color=COLOURS.get(name),
            label=LABELS.get(name, name),
        )
    retrain = summary.get("retrain")
    if retrain is not None:  # recserve serves the retrained model after this swipe
        ax.axvline(retrain["after_swipe"] + 0.5, color="#d62728", linestyle=":", linewidth=1)
        ax.text(retrain["after_swipe"] + 0.6, 0.04, "recserve retrained", fontsize=8)
    ax.set_xlabel("swipe in the session")
    ax.set_ylabel("mean completion (watched fraction)")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"Every swipe makes the feed better ({summary['config']['users']} simulated users)"
    )
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _calibration(summary: dict[str, Any], path: Path) -> None:
    names = [n for n in summary["policies"] if n != "oracle"]
    shares = [100 * summary["policies"][n]["calibrated_users"] for n in names]
    medians = [summary["policies"][n]["calibration_median_swipe"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=110)
    bars = ax.barh(names, shares, color=[COLOURS.get(n) for n in names])
    for bar, median in zip(bars, medians, strict=True):
        text = f"median swipe {median:.0f}" if median is not None else "never"
        ax.text(
            bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8
        )
    ax.set_xlim(0, 115)
    ax.invert_yaxis()
    ax.set_xlabel("% of users whose 3-swipe completion reached 80 % of the oracle's")
    ax.set_title("How quickly the feed calibrates")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _amplification(summary: dict[str, Any], path: Path) -> None:
    trajectories = summary["trajectories"]
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(10, 4.2), dpi=110, gridspec_kw={"width_ratios": [3, 2]}
    )
    quality = np.array([t["quality"] for t in trajectories.values()], dtype=np.float64)
    span = max(float(np.max(np.abs(quality))), 1e-9) if len(quality) else 1.0
    cmap = plt.get_cmap("RdYlGn")
    rng = np.random.default_rng(0)  # a little vertical jitter so lines do not hide each other
    for t in trajectories.values():
        levels = [_level(s) for s in t["states"]]
        x = np.arange(len(levels))
        ax.plot(
            x,
            np.array(levels) + rng.uniform(-0.12, 0.12),
            color=cmap(0.5 + t["quality"] / (2 * span)),
            alpha=0.7,
            linewidth=1,
        )
    ax.set_yticks([-1, 0, 1, 2, 3], ["stopped", "tier 0", "tier 1", "tier 2", "graduated"])
    ax.set_xlabel("swipe round of the population (an item appears when it arrives)")
    ax.set_title("New items' amplification tiers (colour: hidden quality)")
    ax.grid(alpha=0.3)
    groups = summary["amplification"]
    names = list(groups)
    ax_values = [groups[g]["mean_impressions"] for g in names]
    bx.bar(names, ax_values, color=[cmap(0.9), cmap(0.5), cmap(0.1)][: len(names)])
    for i, value in enumerate(ax_values):
        bx.text(i, value, f"{value:.1f}", ha="center", va="bottom", fontsize=9)
    bx.set_ylabel("impressions per new item")
    bx.set_title("By hidden quality (thirds)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _level(state: str) -> float:
    name, tier = state.split(":")
    return {"stopped": -1.0, "graduated": 3.0}.get(name, float(tier))


def _latency(summary: dict[str, Any], path: Path) -> None:
    rows: list[tuple[str, float, float]] = []
    for stage, v in summary["latency"]["server_stages"].items():
        rows.append((f"server: {stage}", v["p50_ms"], v["p99_ms"]))
    for kind, v in summary["latency"]["client"].get("recserve", {}).items():
        rows.append((f"client: {kind} request", v["p50_ms"], v["p99_ms"]))
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r[1] for r in rows], height=0.4, label="p50", color="#1f77b4")
    ax.barh(y + 0.2, [r[2] for r in rows], height=0.4, label="p99", color="#ff7f0e")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds")
    ax.set_title(f"Latency per request stage during the run ({summary['config']['driver']})")
    ax.legend()
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    paths = [
        out / name
        for name in ("completion.png", "calibration.png", "amplification.png", "latency.png")
    ]
    for draw, path in zip(
        (_completion, _calibration, _amplification, _latency), paths, strict=True
    ):
        draw(summary, path)
    return paths
