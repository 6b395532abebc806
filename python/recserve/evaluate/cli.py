"""``recserve eval``: replay a log in time order and score real-time recserve, the same engine
frozen at the split, popularity (live, and frozen at the split) and two peers, item-to-item
co-occurrence (itemcf) and ALS with per-event fold-in (HR@k, NDCG@k; see
``recserve.evaluate.replay``).

    recserve eval --movielens ../shared/data/movielens-100k [--json]
    recserve eval --movielens ../shared/data/movielens-latest-small [--json]
    recserve eval --log events.jsonl --items items.jsonl [--config recserve.toml] [--json]

--movielens takes MovieLens-100K (a directory with u.data) or MovieLens-latest-small (one with
ratings.csv and movies.csv), with the MiniLM vectors in ../movielens-minilm-384 beside it.

The peers' settings are tuned on a validation period inside the data before the split (the
same protocol on the events before the split, scored from --split of that period on: 64-80 %
of the time by default), never on the scored period; the values chosen are printed (and in
--json, under settings.peers). --peers fixes them instead (e.g. to an earlier run's
settings.peers): the tuning is most of the run's time. The peers need no extra: they are numpy.

With ``--train`` (the default with ``--movielens``; needs ``recserve[train]``) both engines
serve a ranker trained on the log before the split, with sampled negatives
(``recserve.evaluate.trained``); with ``--no-train``, the configured model.

Exit status 0 with the results, 2 on bad input (the message on stderr names the file, line and
field) or without the ``serve`` extra the engine needs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["MOVIELENS_CONFIG", "add_arguments", "run"]

_POLICIES = ("realtime", "frozen", "popularity", "popularity_frozen", "itemcf", "als")
#: The settings for --movielens without --config (the choice is explained in the file).
MOVIELENS_CONFIG = Path(__file__).with_name("movielens.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand's options (``run`` carries it out)."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--movielens",
        type=Path,
        metavar="DIR",
        help="MovieLens-100K (the directory of u.data) or latest-small (of ratings.csv)",
    )
    source.add_argument(
        "--log", type=Path, metavar="FILE", help="events, JSON lines in the /v1/events format"
    )
    parser.add_argument(
        "--items", type=Path, metavar="FILE", help="with --log: items, JSON lines (/v1/items)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the engine's TOML settings to evaluate (--movielens: evaluate/movielens.toml)",
    )
    parser.add_argument(
        "--split", type=float, default=0.8, help="frozen from, and scored from, this share of time"
    )
    parser.add_argument("--k", type=int, default=10, help="page size scored (default 10)")
    parser.add_argument(
        "--whole-run", action="store_true", help="also score the period before the split"
    )
    parser.add_argument(
        "--sample", type=int, default=None, help="score a seeded sample of N engagements"
    )
    parser.add_argument(
        "--similarity",
        action="store_true",
        help="rank by query-item similarity instead of the configured model",
    )
    parser.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rank with a model trained on the log before the split (default: with --movielens)",
    )
    parser.add_argument(
        "--negatives", type=int, default=4, help="--train: sampled negatives per impression"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vectors",
        type=Path,
        default=None,
        help="movielens: item vectors (.npy, one row per film; default: the MiniLM ones)",
    )
    parser.add_argument("--dims", type=int, default=64, help="movielens: PCA dims (default 64)")
    parser.add_argument(
        "--max-ratings", type=int, default=None, help="movielens: the first N ratings only"
    )
    parser.add_argument(
        "--peers",
        default=None,
        metavar="JSON|FILE",
        help="the peers' settings instead of tuning them, e.g. an earlier run's settings.peers "
        '(\'{"itemcf": {"decay": 0.8, "window": 20, "normalize": "cosine"}, "als": '
        '{"factors": 16, "regularization": 0.01, "alpha": 1.0, "iterations": 10}}\')',
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        from recserve.evaluate.movielens import movielens_format, movielens_log
        from recserve.evaluate.replay import ReplayError, read_events, read_items, replay
    except ImportError as error:
        print(f"error: {error}; reinstall recserve: a dependency is missing", file=sys.stderr)
        return 2
    try:
        if args.movielens is not None:
            catalogue, events = movielens_log(
                args.movielens,
                vectors=args.vectors,
                dims=args.dims,
                max_ratings=args.max_ratings,
                seed=args.seed,
            )
            name = {"100k": "MovieLens-100K", "latest": "MovieLens-latest-small"}
            source = f"{name[movielens_format(args.movielens)]} ({args.movielens})"
        else:
            if args.items is None:
                raise ReplayError("--log needs --items (the catalogue the events refer to)")
            catalogue = read_items(args.items)
            events = read_events(args.log, catalogue)
            source = str(args.log)
        config = args.config
        if config is None and args.movielens is not None:
            config = MOVIELENS_CONFIG
        result = replay(
            events,
            catalogue,
            config=config,
            split=args.split,
            k=args.k,
            whole_run=args.whole_run,
            sample=args.sample,
            seed=args.seed,
            similarity=args.similarity,
            train=args.train if args.train is not None else args.movielens is not None,
            negatives=args.negatives,
            peers=_peer_settings(args.peers),
            peer_progress=None if args.json else _note,
        )
    except (ReplayError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # --train without torch
        print(f"error: {error} (or --no-train)", file=sys.stderr)
        return 2
    out = result.to_dict()
    out["source"] = source
    if args.json:
        print(json.dumps(out, separators=(",", ":"), allow_nan=False))
    else:
        print(_table(out, args.split))
    return 0


def _peer_settings(value: str | None) -> dict[str, Any] | None:
    """--peers: JSON, or a file holding it (the peers' settings, as settings.peers prints)."""
    if value is None:
        return None
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        peers = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--peers: not JSON ({error})") from None
    if not isinstance(peers, dict) or not set(peers) <= {"itemcf", "als", "validation"}:
        raise ValueError('--peers: expected {"itemcf": {...}, "als": {...}}')
    return peers


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _rows(block: dict[str, Any], k: int) -> list[str]:
    hr, ndcg = f"hr@{k}", f"ndcg@{k}"
    lines = [f"  {'policy':<18}{'HR@' + str(k):>10}{'NDCG@' + str(k):>10}{'hits':>8}"]
    for name in _POLICIES:
        m = block[name]
        lines.append(f"  {name:<18}{m[hr]:>10.4f}{m[ndcg]:>10.4f}{m['hits']:>8,}")
    rt, fz, pop, pf, cf, als = (block[name] for name in _POLICIES)
    lines.append(
        f"  realtime / frozen:     HR {_ratio(rt[hr], fz[hr])}, NDCG {_ratio(rt[ndcg], fz[ndcg])}"
    )
    lines.append(
        f"  realtime / popularity: HR {_ratio(rt[hr], pop[hr])}, NDCG {_ratio(rt[ndcg], pop[ndcg])}"
    )
    lines.append(
        f"  frozen / popularity_frozen: HR {_ratio(fz[hr], pf[hr])}, "
        f"NDCG {_ratio(fz[ndcg], pf[ndcg])}"
    )
    lines.append(
        f"  realtime / itemcf: HR {_ratio(rt[hr], cf[hr])}, NDCG {_ratio(rt[ndcg], cf[ndcg])}; "
        f"realtime / als: HR {_ratio(rt[hr], als[hr])}, NDCG {_ratio(rt[ndcg], als[ndcg])}"
    )
    return lines


def _peers(peers: dict[str, Any], k: int) -> list[str]:
    """What the peers' tuning chose, and on what."""
    period = peers.get("validation", {})
    lines = []
    if period.get("evaluated"):
        tried = period.get("settings_tried", {})
        lines.append(
            f"peers tuned on {_day(period['from_ts'])} to {_day(period['to_ts'])} "
            f"({period['evaluated']:,} engagements before the split; "
            f"{tried.get('itemcf', '?')} itemcf and {tried.get('als', '?')} ALS settings "
            f"tried, best HR@{k}; {period.get('seconds', 0):.0f} s):"
        )
    for name in ("itemcf", "als"):
        chosen = dict(peers.get(name, {}))
        scores = chosen.pop("validation", None)
        note = chosen.pop("note", None)
        values = ", ".join(f"{key}={value}" for key, value in chosen.items())
        tail = (
            f" (validation HR@{k} {scores[f'hr@{k}']:.4f}, NDCG@{k} {scores[f'ndcg@{k}']:.4f})"
            if scores
            else f" (defaults: {note})"
            if note
            else ""
        )
        lines.append(f"  {name:<8}{values}{tail}")
    return lines


def _table(out: dict[str, Any], split: float) -> str:
    k = out["k"]
    returning = out["returning_users"]
    lines = [
        f"recserve eval · {out['source']}",
        f"{out['events']:,} events, {out['users']:,} users, {out['items']:,} items, "
        f"{_day(out['first_ts'])} to {_day(out['last_ts'])}; ranker {out['model_version']}",
        f"frozen and scored from {_day(out['split_ts'])} ({split:.0%} of the time): "
        f"{out['evaluated']:,} of {out['engagements_after_split']:,} engagements scored, "
        f"{out['users_evaluated']:,} users",
        "",
        *_rows(out, k),
        "",
        f"users with events before the split ({returning['users']:,} users, "
        f"{returning['evaluated']:,} engagements):",
        *_rows(returning, k),
    ]
    if "whole_run" in out:
        lines += [
            "",
            f"whole run ({out['whole_run']['evaluated']:,} engagements; frozen = realtime "
            "before the split):",
            *_rows(out["whole_run"], k),
        ]
    peers = out.get("settings", {}).get("peers")
    if peers:
        lines += ["", *_peers(peers, k)]
    lines += ["", f"seen items on a page: {out['seen_dropped']}; ran in {out['seconds']:.1f} s"]
    return "\n".join(lines)
