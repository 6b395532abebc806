"""``recserve retrain``'s arguments and output (``recserve.retrain.job`` does the work).

    recserve retrain --data-dir recserve-data [--holdout 10%] [--metric auc:complete] [--margin 0]
                     [--ab 0.1] [--every 1h] [--config recserve.toml] [--models-dir s3://...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "parse_duration", "parse_share", "run"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m``, ``1h``, ``1d``; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a duration such as 30m, 1h or 3600s, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def parse_share(text: str) -> float:
    """0.1 or 10%; ValueError otherwise."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"a share such as 0.1 or 10%, got {text!r}") from None
    return share


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="the service's data dir")
    parser.add_argument(
        "--holdout", default="10%", help="the most recent share of the log to judge on (10%%)"
    )
    parser.add_argument(
        "--metric",
        default="auc:complete",
        help="what the candidate must win on: auc:<head> (auc:complete) or hr@10",
    )
    parser.add_argument(
        "--margin", type=float, default=0.0, help="by more than this, to be activated (0)"
    )
    parser.add_argument(
        "--ab", "--trial-share", dest="trial_share", default="0.1",
        help="else serve it to this share of users as the trial arm; 0: keep the active model",
    )  # fmt: skip
    parser.add_argument(
        "--max-loss", type=float, default=0.02,
        help="a candidate behind the active model by more than this is served to no one (0.02)",
    )  # fmt: skip
    parser.add_argument("--version", default=None, help="the new model's version (r<time>)")
    parser.add_argument("--models-dir", default=None, help="default <data-dir>/models; s3://...")
    parser.add_argument("--config", type=Path, default=None, help="the service's TOML settings")
    parser.add_argument("--every", default=None, help="run again after this (30m, 1h, ...)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", default="256,128,64", help="hidden layer sizes")
    parser.add_argument("--negatives", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hr-sample", type=int, default=2000, help="held-out pairs for HR@10")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from recserve.retrain.job import RetrainOptions, retrain

    every = parse_duration(args.every) if args.every is not None else None
    options = RetrainOptions(
        holdout=parse_share(args.holdout),
        metric=args.metric,
        margin=args.margin,
        trial_share=parse_share(args.trial_share),
        max_loss=args.max_loss,
        version=args.version,
        hr_sample=args.hr_sample,
        config=args.config,
        models_dir=args.models_dir,
        train={
            "epochs": args.epochs,
            "hidden": tuple(int(h) for h in args.hidden.split(",") if h.strip()),
            "negatives": args.negatives,
            "seed": args.seed,
        },
    )
    if every is not None and args.version is not None:
        raise ValueError("--version names one model: leave it out with --every")
    while True:
        try:
            report = retrain(args.data_dir, options)
        except Exception as error:  # a sidecar outlives one bad round (S3 down, a short log)
            if every is None:
                raise
            print(f"error: {error}; trying again in {args.every}", file=sys.stderr, flush=True)
        else:
            _print(report.to_dict(), as_json=args.json)
        if every is None:
            return 0
        time.sleep(every)


def _print(report: dict[str, object], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report), flush=True)
        return
    candidate, incumbent = report["candidate"], report["incumbent"]
    assert isinstance(candidate, dict)
    assert isinstance(incumbent, dict)
    print(f"candidate {report['version']} against the active model {report['active']}:")
    print(f"{'':<12} {'candidate':>10} {'active':>10}")
    for head, value in candidate["auc"].items():
        old = incumbent["auc"].get(head)
        if value is not None or old is not None:  # a head the log has no labels for: left out
            print(f"{'AUC ' + head:<12} {_fmt(value)} {_fmt(old)}")
    print(f"{'HR@10':<12} {_fmt(candidate['hr@10'])} {_fmt(incumbent['hr@10'])}")
    print(f"{report['decision']}: {report['reason']}")
    print(f"wrote {report['model_path']}", flush=True)


def _fmt(value: object) -> str:
    return f"{value:>10.4f}" if isinstance(value, float) else f"{'n/a':>10}"
