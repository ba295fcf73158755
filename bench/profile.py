"""Where the gateway worker's CPU goes per request, sampled with py-spy under load.

    python -m bench.profile --seconds 20 --concurrency 1 [--cprofile]

Starts the same upstream and gateway as `bench.gateway` and prints the functions with the
most self and inclusive time, per request; `--cprofile` uses cProfile with a CPU clock
instead (`bench.profiled_asgi`). See docs/testing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.gateway import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    EMBEDDED,
    Mode,
    bench_servers,
    chat_body,
    servers_answer,
)
from bench.loadgen import python_load, summarise
from bench.procstats import CpuMeter

FRAME_LOCATION = re.compile(r" \((?P<file>[^:()]+):\d+\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def frame_name(frame: str) -> str:
    """`function (path/to/file.py:123)` → `function (file.py)`: lines merged, paths shortened."""
    match = FRAME_LOCATION.search(frame)
    if not match:
        return frame
    path = match.group("file")
    short = path.split("site-packages/")[-1] if "site-packages/" in path else path.split("/work/main/")[-1]
    return f"{frame[: match.start()]} ({short})"


def parse_collapsed(text: str) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per function, and the total, from py-spy's raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return own, inclusive, total


def report(title: str, counts: Counter[str], total: int, cpu_us_per_request: float, top: int) -> str:
    lines = [f"{title} (share of busy samples, ≈ µs CPU per request)"]
    for name, count in counts.most_common(top):
        share = count / total
        lines.append(f"  {share:6.1%}  {share * cpu_us_per_request:7.0f} µs  {name}")
    return "\n".join(lines)


async def load(target: object, concurrency: int, seconds: float) -> int:
    run = await python_load(target, concurrency, seconds=seconds)  # type: ignore[arg-type]
    print(f"load: {summarise(run).as_dict()}", flush=True)
    return len(run.latencies_ms)


def pyspy_profile(args: argparse.Namespace) -> None:
    with bench_servers(profiled_mode(args)) as servers, tempfile.TemporaryDirectory() as tmp:
        target = servers.through(servers.plain_key, [chat_body("bench")])
        asyncio.run(load(target, 4, 3.0))  # warm-up
        raw = Path(tmp) / "profile.txt"
        cmd = [py_spy(), "record", "--pid", str(servers.gateway_pid), "--rate", str(args.rate), "--nonblocking",
               "--format", "raw", "--output", str(raw), "--duration", str(int(args.seconds) + 2)]  # fmt: skip
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        meter = CpuMeter(servers.gateway_pid)
        requests = asyncio.run(load(target, args.concurrency, args.seconds))
        cpu_us = meter.ms_per_request(requests) * 1000
        spy.wait()
        collapsed = raw.read_text()
        if args.keep_raw:
            Path(args.keep_raw).write_text(collapsed)
        own, inclusive, total = parse_collapsed(collapsed)
    print(f"worker CPU: {cpu_us:.0f} µs per request over {requests} requests; {total} busy samples")
    print(report("self time", own, total, cpu_us, args.top))
    print(report("inclusive time", inclusive, total, cpu_us, args.top))


def cprofile_profile(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gateway.prof"
        app = "bench.profiled_asgi:application"
        with bench_servers(profiled_mode(args), app=app, CASCADEOPS_PROFILE_OUT=str(out)) as servers:
            target = servers.through(servers.plain_key, [chat_body("bench")])
            asyncio.run(load(target, 4, 3.0))  # warm-up
            os.kill(servers.gateway_pid, signal.SIGUSR1)
            meter = CpuMeter(servers.gateway_pid)
            requests = asyncio.run(load(target, args.concurrency, args.seconds))
            cpu_us = meter.ms_per_request(requests) * 1000
            os.kill(servers.gateway_pid, signal.SIGUSR2)
            while not out.exists():
                time.sleep(0.1)
            time.sleep(0.5)  # let the dump finish
        own, inclusive, total = pstats_counts(out)
    print(f"worker CPU under cProfile: {cpu_us:.0f} µs per request over {requests} requests")
    print(report("self time", own, total, cpu_us, args.top))
    print(report("inclusive time", inclusive, total, cpu_us, args.top))


def pstats_counts(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive CPU (µs) per function from a cProfile dump, and the total."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for (file, _, function), (_, _, tottime, cumtime, _) in stats.items():
        name = frame_name(f"{function} ({file}:0)")
        own[name] += int(tottime * 1e6)
        inclusive[name] = max(inclusive[name], int(cumtime * 1e6))  # recursion: cumtime already includes it
    return own, inclusive, sum(own.values())


def profiled_mode(args: argparse.Namespace) -> Mode:
    if not args.production:
        return EMBEDDED
    servers_answer(args.database_url, args.redis_url)  # and the database created where missing
    return Mode("production", redis_url=args.redis_url, database_url=args.database_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep-raw", metavar="PATH", help="also write py-spy's collapsed stacks here")
    parser.add_argument("--cprofile", action="store_true", help="cProfile with a CPU clock instead of py-spy")
    parser.add_argument("--production", action="store_true", help="PostgreSQL and Redis, a budget and a rate limit")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args(argv)
    if args.cprofile:
        cprofile_profile(args)
    else:
        pyspy_profile(args)


if __name__ == "__main__":
    main()
