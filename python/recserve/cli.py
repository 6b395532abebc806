"""The ``recserve`` command.

``recserve info``  which kernels this machine runs.
``recserve demo [--out DIR] [--driver http|inprocess]``
                   simulated users swipe through a real recserve server (started on
                   127.0.0.1) and four baselines; prints how much each swipe improves the feed
                   and writes plots and summary.json (needs ``pip install 'recserve[demo]'``).
``recserve demo --grid [--out DIR] [--seed S] [--users N] [--swipes N]``
                   the same across ten simulated worlds (topics, embedding noise, mood drift,
                   page size, users without history), engines in process, with an item-to-item
                   peer; one table, and summary.json.
``recserve eval --movielens DIR [--json]`` or ``recserve eval --log FILE --items FILE``
                   replay a log in time order; HR@10 and NDCG@10 of real-time recserve, the
                   same frozen after 80 % of the time, and popularity.
``recserve log movielens|synthetic --out DIR``
                   write an impression log (docs/impression-log.md): from MovieLens-100K in
                   ../shared/data, or a seeded synthetic one whose outcomes follow a known model.
``recserve serve [--config FILE] [--host H] [--port P] [--data-dir DIR] [--dims D]``
                   the feed service (HTTP API, embedded store in DIR); see the README.
``recserve train --log DIR | --data-dir DIR --out models/NAME.rsm``
                   train the multi-task ranker on a log (needs ``pip install 'recserve[train]'``),
                   print held-out AUC and log-loss per head for fp32 and int8, write the int8 model.
                   ``--data-dir``: a service's data directory (its impressions/, catalog.npz
                   included).
``recserve retrain --data-dir DIR [--holdout 10%] [--ab 0.1] [--every 1h]``
                   train a candidate on a service's own log, score it and the active model on
                   the most recent part, then activate it, try it on a share of users, or keep
                   the active one (recserve.retrain).

A failure is one line on stderr (``error: ...``) and exit status 2; RECSERVE_TRACEBACK=1 shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from recserve import __version__, simd
from recserve.evaluate import cli as evaluate
from recserve.retrain import cli as retrain_cli

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line (``error: recserve train: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


def _layer_sizes(text: str) -> tuple[int, ...]:
    """``--hidden``: positive layer sizes, comma-separated."""
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive sizes, comma-separated")
    return sizes


def _one_line(error: BaseException) -> str:
    """The error as one line: its message's lines joined, its type where it says more."""
    lines = [line.strip() for line in str(error).splitlines()]
    text = "; ".join(line for line in lines if line and not line.startswith("For further"))
    if not isinstance(error, OSError | ValueError | ImportError) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def _default_data_dir() -> Path:
    return Path.cwd().parent / "shared" / "data"


def run_demo(args: argparse.Namespace) -> int:
    try:
        from recserve.sim.demo import DemoConfig, run_demo
        from recserve.sim.report import print_summary
    except ImportError as exc:
        print(f"error: {exc}; install 'recserve[demo]'", file=sys.stderr)
        return 2
    if args.grid:
        return _run_grid(args)
    out = args.out if args.out is not None else Path(time.strftime("recserve-demo-%Y%m%d-%H%M%S"))
    config = DemoConfig(
        users=300 if args.users is None else args.users,
        swipes=args.swipes,
        seed=args.seed,
        driver="http" if args.driver is None else args.driver,
        impression_events=not args.no_impression_events,
        retrain_at=args.retrain_at,
    )
    print(f"recserve {__version__} · kernels: {simd.active_variant()} · writing to {out}/")
    summary = run_demo(config, out)
    print_summary(summary)
    print(f"\nplots and summary.json in {out}/")
    return 0


def _run_grid(args: argparse.Namespace) -> int:
    from recserve.sim.grid import GridConfig, print_grid, run_grid

    if args.driver == "http":
        print("error: --grid runs its engines in process; drop --driver", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else Path(time.strftime("recserve-grid-%Y%m%d-%H%M%S"))
    defaults = GridConfig()
    config = GridConfig(
        users=defaults.users if args.users is None else args.users,
        swipes=args.swipes,
        seed=args.seed,
    )
    print(f"recserve {__version__} · kernels: {simd.active_variant()} · writing to {out}/")
    print_grid(run_grid(config, out))
    print(f"summary.json in {out}/")
    return 0


def _fmt(value: float | None, width: int = 8, sign: str = "") -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{sign}{width}.4f}"


def write_log(args: argparse.Namespace) -> None:
    if args.source == "movielens":
        from recserve.train.movielens import write_movielens_log

        ml = write_movielens_log(
            args.out, data_dir=args.data_dir, seed=args.seed, max_ratings=args.max_ratings
        )
        print(
            f"wrote a MovieLens-100K log to {ml.path}: {ml.impressions:,} impressions, "
            f"{ml.events:,} events, {ml.users:,} users, {ml.items:,} items"
        )
    else:
        from recserve.train.synthetic import write_synthetic_log

        syn = write_synthetic_log(
            args.out, users=args.users, items=args.items, requests=args.requests, seed=args.seed
        )
        print(
            f"wrote a synthetic log to {syn.path}: {syn.impressions:,} impressions, "
            f"{syn.events:,} events, {syn.users:,} users, {syn.items:,} items (seed {args.seed})"
        )


def _training_log(args: argparse.Namespace) -> Path:
    """The log directory to train on: ``--log``, or ``--data-dir``'s impressions/ once it is
    known to hold a log and its catalogue."""
    if args.log is not None:
        return Path(args.log)
    from recserve.train.log import CATALOG_FILE

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data-dir {data_dir}: no such directory")
    log_dir = data_dir / "impressions"
    if not any(log_dir.glob("impressions-*.jsonl")):
        raise ValueError(
            f"{data_dir} holds no impression log ({log_dir}/impressions-*.jsonl): is it a "
            "service's data directory, with impression_log on, that has served feeds?"
        )
    if not (log_dir / CATALOG_FILE).is_file():
        raise ValueError(
            f"{log_dir / CATALOG_FILE} is missing: the service writes it at every snapshot "
            f"and when it stops; start `recserve serve --data-dir {data_dir}` and stop it "
            "once, then train again"
        )
    return log_dir


def train_model(args: argparse.Namespace) -> None:
    from recserve.train.trainer import train

    log_dir = _training_log(args)  # before anything slow

    hidden: tuple[int, ...] = args.hidden
    served: dict[str, Any] = {}
    if args.config is not None:  # build the rows as the service so configured will
        from recserve.profiles import UpdateRule
        from recserve.service.settings import load_settings

        settings = load_settings(args.config)
        served = {
            "rule": UpdateRule.from_dict(settings.update_rule),
            "query": settings.feed.affinity_query(),
            "co_engagement": settings.co_engagement.options(),
        }
    result = train(
        log_dir,
        **served,
        negatives=args.negatives,
        epochs=args.epochs,
        seed=args.seed,
        hidden=hidden,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        out=args.out,
        progress=not args.no_progress,
        distill=args.distill,
        teacher_hidden=tuple(int(h) for h in args.teacher_hidden.split(",") if h.strip()),
        distill_weight=args.distill_weight,
        return_window_s=args.return_window,
    )
    training = result.metadata["training"]
    for line in training.get("skipped_lines", []):
        print(f"warning: {line}", file=sys.stderr)
    rows = training["rows"]
    layers = " → ".join(str(n) for n in training["layers"])
    sampled = f" ({args.negatives} sampled negatives per impression)" if args.negatives else ""
    print(
        f"trained {layers} on {rows['train']:,} rows{sampled}; held out the last "
        f"{rows['heldout']:,} by time; int8 calibrated on {rows['calibration']:,} rows"
    )
    metrics = result.metrics
    print(
        f"\n{'head':<11} {'AUC fp32':>8} {'AUC int8':>8} {'ΔAUC':>8}   "
        f"{'logloss fp32':>12} {'logloss int8':>12} {'max|Δp|':>8}"
    )
    for head in result.model.heads:
        fp32, int8 = metrics["fp32"][head], metrics["int8"][head]
        delta = None if fp32["auc"] is None or int8["auc"] is None else int8["auc"] - fp32["auc"]
        print(
            f"{head:<11} {_fmt(fp32['auc'])} {_fmt(int8['auc'])} {_fmt(delta, sign='+')}   "
            f"{_fmt(fp32['log_loss'], 12)} {_fmt(int8['log_loss'], 12)} "
            f"{_fmt(metrics['max_abs_diff_per_head'][head])}"
        )
    print(
        f"\nmax |p_fp32 - p_int8| over held-out rows and heads: {metrics['max_abs_diff']:.4f}; "
        f"largest AUC loss: {_fmt(metrics['max_auc_loss'], 0)}"
    )
    if args.distill:
        from recserve.train.trainer import distillation_table

        teacher = " → ".join(str(n) for n in training["distillation"]["teacher_layers"])
        print(f"\nteacher {teacher} (fp32) against the student, without and with it:")
        print("\n".join(distillation_table(metrics, result.model.heads)))
    print(f"wrote the int8 model to {args.out}")


def _serve(args: argparse.Namespace) -> int:
    try:
        from recserve.service.auth import unprotected_listen
        from recserve.service.server import serve
        from recserve.service.settings import load_settings
    except ImportError as exc:
        print(f"error: {exc}; reinstall recserve: a dependency is missing", file=sys.stderr)
        return 2
    overrides = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("data_dir", args.data_dir),
            ("dims", args.dims),
        )
        if value is not None
    }
    settings = load_settings(args.config, **overrides)
    problem = unprotected_listen(settings)  # before anything binds or touches data_dir
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    serve(settings, log_level=args.log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="recserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"recserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show the SIMD kernels this machine runs")
    demo_parser = commands.add_parser(
        "demo", help="simulated users swipe through recserve and four baselines"
    )
    demo_parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default: a new directory)"
    )
    demo_parser.add_argument(
        "--driver",
        choices=["http", "inprocess"],
        default=None,
        help="reach the engines over HTTP (default) or call them in process (same numbers)",
    )
    demo_parser.add_argument(
        "--grid", action="store_true", help="run ten simulated worlds in process, one table"
    )
    demo_parser.add_argument(
        "--users", type=int, default=None, help="users (per world with --grid; default 300)"
    )
    demo_parser.add_argument("--swipes", type=int, default=20)
    demo_parser.add_argument("--seed", type=int, default=0)
    demo_parser.add_argument(
        "--no-impression-events",
        action="store_true",
        help="the engines' client posts no impression events, only what the users did",
    )
    demo_parser.add_argument(
        "--retrain-at",
        type=float,
        default=None,
        help="after this share of the swipes (e.g. 0.5), recserve retrains on its own impression "
        "log and serves the new model to everyone for the rest of the run, whatever its "
        "figures; recserve-builtin keeps the built-in model, to compare",
    )

    log_parser = commands.add_parser("log", help="write an impression log to train on")
    log_parser.add_argument("source", choices=["movielens", "synthetic"])
    log_parser.add_argument("--out", type=Path, required=True, help="the log directory to write")
    log_parser.add_argument("--seed", type=int, default=0)
    log_parser.add_argument(
        "--data-dir",
        type=Path,
        default=_default_data_dir(),
        help="movielens: the shared data directory (default: ../shared/data)",
    )
    log_parser.add_argument(
        "--max-ratings",
        type=int,
        default=None,
        help="movielens: keep only the first N ratings in time order",
    )
    log_parser.add_argument("--users", type=int, default=300, help="synthetic: users")
    log_parser.add_argument("--items", type=int, default=1000, help="synthetic: items")
    log_parser.add_argument(
        "--requests", type=int, default=3000, help="synthetic: feed requests (10 impressions each)"
    )

    train_parser = commands.add_parser("train", help="train the int8 ranker on an impression log")
    source = train_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="the log directory (with its catalog.npz)")
    source.add_argument(
        "--data-dir",
        type=Path,
        help="a service's data directory: trains on its impressions/ (pass the service's "
        "settings as --config)",
    )
    train_parser.add_argument(
        "--out", type=Path, required=True, help="where to write the model (e.g. models/ranker.rsm)"
    )
    train_parser.add_argument(
        "--negatives",
        type=int,
        default=0,
        help="sampled negatives per impression: items the user had not been shown (default 0)",
    )
    train_parser.add_argument("--epochs", type=int, default=5)
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument(
        "--hidden",
        type=_layer_sizes,
        default="256,128,64",
        help="hidden layer sizes, comma-separated (default 256,128,64)",
    )
    train_parser.add_argument("--batch-size", type=int, default=256)
    train_parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_parser.add_argument(
        "--distill",
        action="store_true",
        help="train a larger float teacher first, then the served student on its soft labels",
    )
    train_parser.add_argument(
        "--teacher-hidden",
        default="512,256,128",
        help="with --distill: the teacher's hidden layer sizes (default 512,256,128)",
    )
    train_parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        help="with --distill: the soft labels' share of the student's loss (default 0.5)",
    )
    train_parser.add_argument(
        "--return-window",
        type=float,
        default=86_400.0,
        help="the return head: the next session starts within this many seconds (default a day)",
    )
    train_parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the service's TOML settings: its update rule, feed and co-engagement settings "
        "shape the rows (default: the defaults)",
    )
    serve_parser = commands.add_parser("serve", help="run the feed service over HTTP")
    serve_parser.add_argument("--config", type=Path, default=None, help="a TOML settings file")
    serve_parser.add_argument("--host", default=None, help="default 127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=None, help="default 8000")
    serve_parser.add_argument("--data-dir", type=Path, default=None, help="default ./recserve-data")
    serve_parser.add_argument(
        "--dims", type=int, default=None, help="default: from the first items posted"
    )
    serve_parser.add_argument("--log-level", default="info")
    evaluate.add_arguments(
        commands.add_parser(
            "eval", help="replay a log in time order: HR@10/NDCG@10 of real-time, frozen, popular"
        )
    )
    retrain_cli.add_arguments(
        commands.add_parser(
            "retrain", help="train on a service's log, check against the active model, ship it"
        )
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version: 0; bad arguments: 2, one line (_Parser)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # any failure: one line, exit 2
        if os.environ.get("RECSERVE_TRACEBACK"):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "eval":
        return evaluate.run(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "retrain":
        return retrain_cli.run(args)
    if args.command == "info":
        print(f"recserve {__version__}")
        print(f"active ISA: {simd.active_isa()} ({simd.active_variant()})")
        print(f"available:  {', '.join(simd.available_isas())}")
    elif args.command == "demo":
        return run_demo(args)
    elif args.command == "log":
        write_log(args)
    else:
        train_model(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
