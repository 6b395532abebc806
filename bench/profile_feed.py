"""Where a feed request's time goes, Python and C++ frames together: a flame graph of a live
``recserve serve`` under load, and its top frames.

    pip install ".[bench]"                          # py-spy comes with it
    python bench/profile_feed.py --out /tmp/profile # 20k items, 15 s of load: about a minute

It starts ``recserve serve`` on 127.0.0.1 (the native feed, no precomputed pages, so every
request assembles its page), posts a catalogue and a few thousand users' events, then keeps 64
connections asking for pages while ``py-spy record --native`` samples the server: once for the
flame graph (``feed.svg``), once for the collapsed stacks (``feed.folded``) the tables are
computed from (``top.md``: the 20 frames with the most samples of their own in working threads,
with their total time beside). The core is built with frame pointers
(``RECSERVE_FRAME_POINTERS``, on by default), so the native frames unwind; build a
``RelWithDebInfo`` wheel for file and line names (README, "Profiling a live replica"). py-spy
needs ptrace rights over the server: root, or ``kernel.yama.ptrace_scope = 0``. Benchmarks never
assert.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feed import closed_loop, free_port, load, post_events, serve, wait_ready  # noqa: E402
from machine import cpu_model, git_sha  # noqa: E402
from recserve import simd  # noqa: E402


def py_spy() -> str | None:
    """py-spy on PATH, or beside this Python (a venv's bin, not activated)."""
    return shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                        os.environ.get("PATH", "")]))  # fmt: skip


def record(pid: int, out: Path, fmt: str, seconds: int, rate: int) -> None:
    """py-spy's samples of the server for ``seconds``, native frames included."""
    command = [
        py_spy() or "py-spy", "record", "--pid", str(pid), "--native",
        "--format", fmt, "--output", str(out), "--duration", str(seconds),
        "--rate", str(rate), "--threads",
    ]  # fmt: skip
    # Native stacks need the process paused for each sample: --nonblocking is not an option.
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"py-spy failed: {done.stderr.strip()[:500]}")


def under_load(port: int, paths: list[str], seconds: float, work: Callable[[], None]) -> float:
    """Runs ``work()`` while a closed loop of 64 connections asks for pages; its request rate."""
    rate: list[float] = []
    loader = threading.Thread(
        target=lambda: rate.append(asyncio.run(closed_loop(port, paths, 64, seconds)))
    )
    loader.start()
    work()
    loader.join()
    return rate[0]


#: Stacks that wait rather than work: py-spy's native mode samples waiting threads too.
IDLE = ("PyThread_acquire_lock_timed", "select (selectors.py", "Condition.wait", "Event.wait")


def top_frames(folded: Path, n: int) -> tuple[int, list[tuple[str, int, int]]]:
    """(samples, [(frame, self samples, total samples)]): the n frames with the most samples of
    their own, over every stack that was working, not waiting (``IDLE``); a frame counts once
    per stack for its total."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first is the thread
        if not frames or any(wait in stack for wait in IDLE):
            continue
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    rows = [(frame, count, total[frame]) for frame, count in own.most_common(n)]
    return samples, rows


def short(frame: str, width: int = 96) -> str:
    return frame if len(frame) <= width else frame[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where feed.svg, top.md go")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=15, help="of load per recording")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if py_spy() is None:
        sys.exit("py-spy is not installed: pip install py-spy (or '.[bench]')")
    args.out.mkdir(parents=True, exist_ok=True)
    sha, isa, cpu = git_sha(), simd.active_variant(), cpu_model()
    print(f"# profile_feed: {cpu}; kernels {isa}; git {sha}; {args.items:,} items")
    work = Path(tempfile.mkdtemp(prefix="profile-feed-"))
    port = free_port()
    server = serve(work, port, feed_threads=0, native=True)
    try:
        wait_ready(port, "/readyz")
        load(port, args.items, args.seed)
        asyncio.run(post_events(port, 3, 500))  # users with a direction: the ANN path
        paths = [f"/v1/feed/u{u}?n=10" for u in range(997)]
        asyncio.run(closed_loop(port, paths, 8, 2.0))  # warm-up
        svg, folded = args.out / "feed.svg", args.out / "feed.folded"
        rps = under_load(
            port, paths, args.seconds + 2,
            lambda: record(server.pid, svg, "flamegraph", args.seconds, args.rate),
        )  # fmt: skip
        under_load(
            port, paths, args.seconds + 2,
            lambda: record(server.pid, folded, "raw", args.seconds, args.rate),
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    samples, rows = top_frames(folded, 20)
    lines = [
        f"{rps:,.0f} feed requests/s under the sampler (64 connections, {args.items:,} items); "
        f"{samples:,} samples of working threads; {cpu}, kernels {isa}, git {sha}",
        "",
        "| frame | self % | total % |",
        "|---|---|---|",
        *(
            f"| `{short(frame)}` | {100 * own / samples:.1f} | {100 * tot / samples:.1f} |"
            for frame, own, tot in rows
        ),
    ]
    (args.out / "top.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nflame graph: {svg}; collapsed stacks: {folded}")


if __name__ == "__main__":
    main()
