"""Benchmark a restart: `recserve serve` from process start to /readyz 200 over a data directory
of N items, loading the files saved with the snapshot (catalogue, amplification, ANN index)
against rebuilding the index as every restart did before.

    python bench/bench_restart.py                     # 1,000,000 items (built once: many minutes)
    python bench/bench_restart.py --items 100000      # while developing
    python bench/bench_restart.py --quick             # 20,000 items, 2 runs each

Data: N items with clustered seeded vectors (dims 64, as bench_feed.py) and the creators,
durations and tags of the KuaiRand-Pure videos in ../shared/data (read at run time; synthetic
ones without it), posted through the engine in batches of 10,000 as the back catalogue, 1 % as
new items in amplification, then 2,000 users with 20 watches each, then a snapshot. The data
directory is built once per (items, dims, seed) under build/bench-restart/ and reused.

Each configuration starts `recserve serve` on 127.0.0.1 (recserve.service.child.start_serve) over
its own copy of that directory (big files hard-linked, the WAL copied), polls /readyz every 10 ms
from the moment the process is started, and kills it (SIGKILL: nothing is written) once it
answers 200. Configurations:

  empty        a data directory without items: the fixed cost (interpreter, imports, uvicorn)
  before       the snapshot as the previous version wrote it (catalogue and amplification as JSON
               in the state file, no index file): its recovery, the index rebuilt from vectors
  index lost   this version's files with the index file removed: the fallback, index rebuilt
  files        this version's files loaded: the new path

Prints one JSON line per run, and a Markdown table of medians with ratios against "before".
A benchmark: nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feed import make_items  # noqa: E402
from machine import cpu_model, git_sha  # noqa: E402
from recserve import simd  # noqa: E402
from recserve.catalog import Item  # noqa: E402
from recserve.ingest.event_row import EventRow  # noqa: E402
from recserve.service.child import free_port, start_serve  # noqa: E402
from recserve.service.engine import Engine  # noqa: E402
from recserve.service.settings import Settings  # noqa: E402
from recserve.store.embedded import _read_state, _write_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIMS = 64
BATCH = 10_000
CONFIGS = ("empty", "before", "index lost", "files")
SLOW = ("before", "index lost")


# ---- the data directory ----------------------------------------------------------------------
def build(base: Path, n: int, seed: int) -> dict[str, float]:
    """Posts n items, events and takes a snapshot in ``base`` (once; reused after)."""
    done = base / "built.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    items, vectors = make_items(n, seed)
    rng = np.random.default_rng(seed)
    new = set(rng.choice(n, size=n // 100, replace=False).tolist())
    t0 = 1_700_000_000_000
    items = [
        Item(it.id, it.creator_id, it.duration_ms, it.tags, t0 + i, f"videos/{it.id}.mp4")
        for i, it in enumerate(items)
    ]
    engine = Engine(Settings(data_dir=base, dims=DIMS, impression_log=False, clock="events"))
    engine.start()
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        batch = range(first, min(first + BATCH, n))
        for amplify in (False, True):
            chosen = [i for i in batch if (i in new) == amplify]
            if chosen:
                engine.upsert_items([items[i] for i in chosen], vectors[chosen], amplify=amplify)
        print(
            f"  built {batch.stop:,} items, {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
    post_s = time.perf_counter() - started
    watched = rng.integers(0, n, (2_000, 20))
    for user, row in enumerate(watched):
        engine.post_events([
            EventRow(f"e{user}-{j}", f"u{user}", f"v{i}", "watch", 9_000, 15_000, t0 + n + j)
            for j, i in enumerate(row.tolist())
        ])  # fmt: skip
    started = time.perf_counter()
    engine.snapshot()
    snapshot_s = time.perf_counter() - started
    engine.close(snapshot=False)
    info = {"post_s": post_s, "snapshot_s": snapshot_s}
    done.write_text(json.dumps(info))
    return info


def variant(base: Path, root: Path, config: str) -> Path:
    """A copy of the data directory for one configuration: big files hard-linked."""
    target = root / config.replace(" ", "-")
    if target.exists():
        shutil.rmtree(target)
    if config == "empty":
        target.mkdir(parents=True)
        return target
    shutil.copytree(base, target, copy_function=os.link, ignore=shutil.ignore_patterns("wal"))
    shutil.copytree(base / "state" / "wal", target / "state" / "wal")  # opened for appending
    snapshots = target / "state" / "snapshots"
    if config == "index lost":
        for path in snapshots.glob("index-*.rsi"):
            path.unlink()
    elif config == "before":
        to_previous_format(target)
    return target


def to_previous_format(data_dir: Path) -> None:
    """Rewrites the newest state file as the previous version wrote it (the catalogue and the
    amplification as JSON inside), without the files."""
    snapshots = data_dir / "state" / "snapshots"
    engine = Engine(Settings(data_dir=data_dir, impression_log=False))
    engine.start()
    assert engine.state is not None
    extension = {
        "catalog": engine.state.catalog.state(),
        "amplifier": engine.state.amplifier.to_dict(),
        "users": engine.state.users.state(),
    }
    engine.close(snapshot=False)
    state_path = sorted(snapshots.glob("state-*.json"))[-1]
    lsn = state_path.name.split(".")[0].split("-")[1]
    state = _read_state(state_path)
    state.pop("files", None)
    state["extension"] = extension
    state_path.unlink()  # a hard link: write a file of its own
    _write_state(state_path, state)
    for path in snapshots.iterdir():
        if path.suffix in (".bin", ".rsi") and lsn in path.name:
            path.unlink()


# ---- one restart ------------------------------------------------------------------------------
def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def restart(data_dir: Path, work: Path, timeout_s: float) -> float:
    """Seconds from starting `recserve serve` to /readyz 200; the process is then killed."""
    config = work / "restart.toml"
    config.write_text(f"dims = {DIMS}\n")
    log = work / "restart.log"
    log.write_text("")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    started = time.perf_counter()
    process = start_serve(config, data_dir, port, log, env)
    try:
        while not ready(port):
            if process.poll() is not None:
                raise RuntimeError(f"recserve serve exited: {log.read_text()[-2000:]}")
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"not ready in {timeout_s:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def sizes(base: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for path in (base / "state" / "snapshots").iterdir():
        kind = path.name.split("-")[0]
        out[kind] = out.get(kind, 0) + path.stat().st_size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 items, 2 runs each")
    parser.add_argument("--runs", type=int, default=3, help="runs of the fast configurations")
    parser.add_argument("--slow-runs", type=int, default=3, help="runs of those that rebuild")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="a subset of " + str(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per restart")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "bench-restart")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.items
    runs = {c: (2 if args.quick else args.slow_runs if c in SLOW else args.runs) for c in CONFIGS}
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for config in configs:
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r}; known: {', '.join(CONFIGS)}")
    sha, isa, cpu = git_sha(), simd.active_isa(), cpu_model()
    print(f"# bench_restart: {cpu}, {os.cpu_count()} cores; kernels {isa}; git {sha}")
    base = args.work_dir / f"items-{n}-d{DIMS}-s{args.seed}" / "base"
    print(f"# data directory {base} (built once)", file=sys.stderr)
    built = build(base, n, args.seed)
    stored = sizes(base)
    medians: dict[str, float] = {}
    for config in configs:
        data_dir = variant(base, base.parent, config)
        times = []
        for run in range(runs[config]):
            seconds = restart(data_dir, base.parent, args.timeout)
            times.append(seconds)
            line = {
                "bench": "restart", "config": config, "items": n, "dims": DIMS, "run": run,
                "seconds": round(seconds, 3), "isa": isa, "cpu": cpu, "git_sha": sha,
            }  # fmt: skip
            print(json.dumps(line), flush=True)
        medians[config] = statistics.median(times)
        shutil.rmtree(data_dir)
    print(f"\n### Restart to /readyz 200, {n:,} items x {DIMS} dims (medians)\n")
    print("| data directory | runs | seconds | x before |")
    print("|---|---|---|---|")
    for config in configs:
        ratio = f"x{medians[config] / medians['before']:.3f}" if "before" in medians else ""
        print(f"| {config} | {runs[config]} | {medians[config]:.2f} | {ratio} |")
    mb = {k: v / 2**20 for k, v in stored.items()}
    print(
        f"\nSnapshot files: profiles {mb.get('profiles', 0):.0f} MB, index {mb.get('index', 0):.0f}"
        f" MB, catalogue {mb.get('catalog', 0):.1f} MB, amplification {mb.get('amplifier', 0):.1f}"
        f" MB, state {stored.get('state', 0) / 1024:.1f} KB. Building: {built['post_s']:.0f} s"
        f" to post the items, {built['snapshot_s']:.1f} s for the snapshot."
    )


if __name__ == "__main__":
    main()
