"""Gateway overhead: the same load against a zero-delay upstream, directly and through CascadeOps.

`make bench` runs this. It starts, as separate processes on loopback, the local
OpenAI-compatible upstream (`bench.upstream`) and one uvicorn worker serving the gateway in
embedded mode (a temporary SQLite file and record spool), with a two-tier policy whose
cheap tier is that upstream and accepts every answer. For each concurrency it sends the
same chat request N times to the upstream directly and then through the gateway, and
reports the difference of the latency percentiles as the gateway's overhead.

The load generator shares the machine's cores with both servers, so absolute figures are
pessimistic; run it on an idle machine and compare runs made on the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [{"role": "user", "content": "What is 6 times 7? Answer briefly."}]}
SEED_SCRIPT = """
import django; django.setup()
from decimal import Decimal
from routing import services
from routing.models import ModelEndpoint
upstream = {upstream!r}
cheap = ModelEndpoint.objects.create(name="bench-cheap", provider_kind="openai_compat", base_url=upstream,
    model_id="cheap", input_price_per_m=Decimal("0.15"), output_price_per_m=Decimal("0.60"))
strong = ModelEndpoint.objects.create(name="bench-strong", provider_kind="openai_compat", base_url=upstream,
    model_id="strong", input_price_per_m=Decimal("2.50"), output_price_per_m=Decimal("10.00"))
policy = services.policy_create(name="bench", tiers=[(cheap, 0.0), (strong, 1.0)])
print(services.api_key_create(name="bench", policy=policy, team="bench", app="bench")[1])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def gateway_env(var_dir: str, use_redis: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "cascadeops.settings", "CASCADEOPS_VAR_DIR": var_dir, "LOG_LEVEL": "WARNING"})
    if use_redis:
        env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
        env["CASCADEOPS_RECORD_STREAM"] = f"cascadeops:bench:{os.getpid()}"
    return env


def seed(env: dict[str, str], upstream: str) -> str:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = SEED_SCRIPT.format(upstream=upstream)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


async def load(url: str, headers: dict[str, str], concurrency: int, total: int) -> tuple[list[float], float]:
    """Latencies (ms) of `total` requests from `concurrency` clients, and the wall time (s)."""
    latencies: list[float] = []
    remaining = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.post(url, json=BODY)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(direct: tuple[list[float], float], gateway: tuple[list[float], float]) -> dict[str, float]:
    (d, d_wall), (g, g_wall) = direct, gateway
    figures = {
        "overhead_p50_ms": percentile(g, 0.50) - percentile(d, 0.50),
        "overhead_p99_ms": percentile(g, 0.99) - percentile(d, 0.99),
        "rps": len(g) / g_wall,
        "gateway_p50_ms": percentile(g, 0.50),
        "gateway_p99_ms": percentile(g, 0.99),
        "gateway_mean_ms": statistics.fmean(g),
        "direct_p50_ms": percentile(d, 0.50),
        "direct_p99_ms": percentile(d, 0.99),
        "direct_rps": len(d) / d_wall,
        "requests": len(g),
    }
    return {k: round(v, 3) for k, v in figures.items()}


async def measure(upstream: str, gateway: str, key: str, levels: list[int], total: int) -> dict[str, Any]:
    direct_url, gateway_url = f"{upstream}/chat/completions", f"{gateway}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {key}"}
    await load(gateway_url, auth, 4, 300)  # warm-up: config cache, connection pools
    await load(direct_url, {}, 4, 300)
    results: dict[str, Any] = {}
    for c in levels:
        direct = await load(direct_url, {}, c, total)
        through = await load(gateway_url, auth, c, total)
        results[f"c{c}"] = summarise(direct, through)
        print(f"c={c}: {json.dumps(results[f'c{c}'])}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/gateway.json")
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--redis", action="store_true", help="record to a Redis stream instead of the spool")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    # Under var/, not /tmp: the record spool creates a file per request, and this machine's
    # /tmp makes that ten times slower than the work tree's file system.
    (ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=ROOT / "var") as var_dir:
        env = gateway_env(var_dir, args.redis)
        up_cmd = [sys.executable, "-m", "bench.upstream", "--port", str(up_port)]
        gw_cmd = [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(gw_port),
                  "--no-access-log", "--lifespan", "off", "--log-level", "warning"]  # fmt: skip
        with process(up_cmd, env):
            wait_for(f"{upstream}/models")
            key = seed(env, upstream)
            with process(gw_cmd, env):
                wait_for(f"http://127.0.0.1:{gw_port}/v1/models")
                results = asyncio.run(measure(upstream, f"http://127.0.0.1:{gw_port}", key, levels, args.requests))
    results["meta"] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "gateway": "1 uvicorn worker, embedded mode" + (" + Redis stream" if args.redis else " (record spool)"),
        "requests_per_level": args.requests,
    }
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
