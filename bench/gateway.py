"""Gateway overhead, CPU per request, cache hits and a memory soak, on loopback.

`make bench` runs this: it starts the local upstream and one gateway worker in embedded
mode, then measures the overhead against the upstream alone at each concurrency, the load
generator's own cost, cache-hit latency, streaming time to first token, and the worker's
memory over a soak; then the same worker in production mode (PostgreSQL, Redis, a team
budget and a rate limit on the key, the recorder running), with the recorder's throughput
and backlog. CPU per request is the figure to compare across runs on the same machine.
See docs/testing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import (
    LoadRun,
    LoadSummary,
    Target,
    encode_request,
    percentile,
    python_load,
    summarise,
    wrk_available,
    wrk_load,
)
from bench.procstats import CpuMeter, cpu_seconds, peak_rss_mb, rss_mb, slope_mb_per_min
from bench.streaming import first_token_ms
from bench.streaming import summary as first_token_summary
from testing.net import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "What is 6 times 7? Answer briefly."
CACHE_HEADER = "x-cascadeops-cache"
CACHE_HIT = "hit-exact"
SOAK_CONCURRENCY = 10
SOAK_CACHED_PROMPTS = 500
STREAMED_REQUESTS = 300
# How long the recorder may take to empty the record stream after the c=50 load.
DRAIN_LIMIT_S = 60.0
SERVE_PROTOCOL = "cascadeops.server:ReadDeadlineHttpToolsProtocol"
# Production mode's default servers: a database and a Redis database the bench may empty.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cascadeops_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
SEED_SCRIPT = """
import django; django.setup()
from decimal import Decimal
from routing.policies import services
from routing.models import ModelEndpoint
upstream = {upstream!r}
cheap = ModelEndpoint.objects.create(name="bench-cheap", provider_kind="openai_compat", base_url=upstream,
    model_id="cheap", input_price_per_m=Decimal("0.15"), output_price_per_m=Decimal("0.60"))
strong = ModelEndpoint.objects.create(name="bench-strong", provider_kind="openai_compat", base_url=upstream,
    model_id="strong", input_price_per_m=Decimal("2.50"), output_price_per_m=Decimal("10.00"))
embedder = ModelEndpoint.objects.create(name="bench-embed", provider_kind="openai_compat", base_url=upstream,
    model_id="embed", kind="embeddings", input_price_per_m=Decimal("0.02"), output_price_per_m=Decimal("0"))
plain = services.policy_create(name="bench", tiers=[(cheap, 0.0), (strong, 1.0)], cache_ttl_s=0,
    embeddings_endpoint=embedder)
cached = services.policy_create(name="bench-cached", tiers=[(cheap, 0.0), (strong, 1.0)], cache_ttl_s=3600)
if {production!r}:
    # Production mode's request path: the key's team has a blocking budget and the key a
    # rate limit, both far above what the bench spends, so every request reserves, is
    # charged and settles.
    from billing.models import Budget
    Budget.objects.create(name="bench-team", scope="team", scope_value="bench", period="month",
        limit=Decimal("1000000"), hard_action="reject")
    limits = dict(requests_per_minute=100_000_000, tokens_per_minute=1_000_000_000)
else:
    limits = {{}}
print(services.api_key_create(name="bench", policy=plain, team="bench", app="bench", **limits)[1])
print(services.api_key_create(name="bench-cached", policy=cached, team="bench", app="bench-cached")[1])
"""


def chat_body(policy: str, prompt: str = PROMPT) -> dict[str, object]:
    return {"model": policy, "messages": [{"role": "user", "content": prompt}]}


@contextmanager
def process(cmd: list[str], env: dict[str, str], cpus: set[int] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`cmd` running until the block ends; on `cpus` only when given (its threads inherit them)."""
    pin = None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=pin)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass(frozen=True, slots=True)
class Mode:
    """Where the gateway keeps its shared state: SQLite and the spool (no URLs), or servers."""

    name: str
    redis_url: str = ""
    database_url: str = ""

    @property
    def production(self) -> bool:
        return bool(self.redis_url and self.database_url)


EMBEDDED = Mode("embedded")


def gateway_env(var_dir: str, mode: Mode) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "cascadeops.settings", "CASCADEOPS_VAR_DIR": var_dir, "LOG_LEVEL": "WARNING"})
    if mode.redis_url:
        env["REDIS_URL"] = mode.redis_url
        env["CASCADEOPS_RECORD_STREAM"] = f"cascadeops:bench:{os.getpid()}"
    if mode.database_url:
        env["DATABASE_URL"] = mode.database_url
    return env


def emptied(env: dict[str, str], mode: Mode) -> None:
    """Production mode's database and Redis database as a fresh install has them: empty."""
    import redis

    subprocess.run([sys.executable, "manage.py", "flush", "--noinput"], cwd=ROOT, env=env, check=True)
    redis.Redis.from_url(mode.redis_url).flushdb()


def seed(env: dict[str, str], upstream: str, mode: Mode) -> tuple[str, str]:
    """Migrate the bench database and create the policies; returns (plain key, caching key)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    if mode.production:
        emptied(env, mode)
    script = SEED_SCRIPT.format(upstream=upstream, production=mode.production)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"seeding the bench database failed:\n{out.stderr}")
    plain, cached = out.stdout.strip().splitlines()[-2:]
    return plain, cached


@dataclass(frozen=True, slots=True)
class Servers:
    """The running upstream and gateway, and what the measurements need to reach them."""

    upstream_port: int
    upstream_pid: int
    gateway_port: int
    gateway_pid: int
    plain_key: str
    cached_key: str
    env: dict[str, str]

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}/v1/chat/completions"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/v1/chat/completions"

    def direct(self, body: dict[str, object]) -> Target:
        request = encode_request(f"127.0.0.1:{self.upstream_port}", "/v1/chat/completions", body)
        return Target("127.0.0.1", self.upstream_port, [request])

    def through(self, key: str, bodies: list[dict[str, object]]) -> Target:
        auth = {"Authorization": f"Bearer {key}"}
        host = f"127.0.0.1:{self.gateway_port}"
        return Target(
            "127.0.0.1", self.gateway_port, [encode_request(host, "/v1/chat/completions", b, auth) for b in bodies]
        )


@contextmanager
def bench_servers(
    mode: Mode, app: str = "cascadeops.asgi:application", gateway_cpus: set[int] | None = None, **extra_env: str
) -> Iterator[Servers]:
    """The upstream and one gateway worker serving `app` (on `gateway_cpus` when given), seeded."""
    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    # Under var/, as an install keeps it: the record spool creates a segment file every
    # CASCADEOPS_RECORD_SEGMENT_SECONDS, and
    # what that costs depends on the file system (see `gateway_sys_ms_per_request`).
    (ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=ROOT / "var") as var_dir:
        env = {**gateway_env(var_dir, mode), **extra_env}
        up_cmd = [sys.executable, "-m", "testing.upstream", "--port", str(up_port), "--tool-call", TOOL_CALL]
        # The HTTP protocol `serve` runs (httptools, with the read deadline and whole answers in one
        # write) and uvloop, named: without them uvicorn falls back to h11 and asyncio, measured at a
        # quarter to a half more CPU per request: better to fail than to measure that.
        gw_cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(gw_port), "--http", SERVE_PROTOCOL,
                  "--loop", "uvloop", "--no-access-log", "--lifespan", "off", "--log-level", "warning"]  # fmt: skip
        with process(up_cmd, env) as up:
            wait_until_up(f"{upstream}/models")
            plain, cached = seed(env, upstream, mode)
            with process(gw_cmd, env, gateway_cpus) as gw:
                wait_until_up(f"http://127.0.0.1:{gw_port}/v1/models")
                yield Servers(up_port, up.pid, gw_port, gw.pid, plain, cached, env)


Cpu = tuple[float, float]  # (user, system) ms per request


async def measured(target: Target, pid: int, concurrency: int, seconds: float) -> tuple[LoadSummary, Cpu]:
    """Python-generator load on `target` and the CPU ms per request the process `pid` spent."""
    meter = CpuMeter(pid)
    run = await python_load(target, concurrency, seconds=seconds)
    return summarise(run), meter.split_ms_per_request(len(run.latencies_ms))


def measured_wrk(
    url: str, body: dict[str, object], key: str | None, pid: int, c: int, s: float
) -> tuple[LoadSummary, Cpu]:
    meter = CpuMeter(pid)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    summary = wrk_load(url, body, headers, c, s)
    return summary, meter.split_ms_per_request(summary.requests)


async def overhead_level(servers: Servers, concurrency: int, seconds: float, use_wrk: bool) -> dict[str, Any]:
    body = chat_body("bench")
    if use_wrk:
        direct, up_cpu = measured_wrk(servers.upstream_url, body, None, servers.upstream_pid, concurrency, seconds)
        gw = measured_wrk(servers.gateway_url, body, servers.plain_key, servers.gateway_pid, concurrency, seconds)
    else:
        direct, up_cpu = await measured(servers.direct(body), servers.upstream_pid, concurrency, seconds)
        gw = await measured(servers.through(servers.plain_key, [body]), servers.gateway_pid, concurrency, seconds)
    through, (gw_user, gw_sys) = gw
    gw_cpu = gw_user + gw_sys
    if through.non_2xx or direct.non_2xx:
        raise RuntimeError(f"non-2xx answers at c={concurrency}: gateway {through.non_2xx}, direct {direct.non_2xx}")
    figures = {
        "overhead_p50_ms": through.p50_ms - direct.p50_ms,
        "overhead_p99_ms": through.p99_ms - direct.p99_ms,
        "rps": through.rps,
        "gateway_p50_ms": through.p50_ms,
        "gateway_p99_ms": through.p99_ms,
        "gateway_mean_ms": through.mean_ms,
        "gateway_cpu_ms_per_request": gw_cpu,
        "gateway_sys_ms_per_request": gw_sys,
        # What one worker could serve with a core to itself, from its CPU per request.
        "gateway_rps_per_core": 1000 / gw_cpu if gw_cpu else 0.0,
        "direct_p50_ms": direct.p50_ms,
        "direct_p99_ms": direct.p99_ms,
        "direct_rps": direct.rps,
        "upstream_cpu_ms_per_request": sum(up_cpu),
        "client_cpu_us_per_request": through.client_cpu_us_per_request,
        "requests": through.requests,
    }
    return {"generator": through.generator, **{k: round(v, 3) for k, v in figures.items()}}


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs of one level; `requests` is their total (all were recorded)."""
    figures = {k: round(statistics.median(run[k] for run in runs), 3) for k in runs[0] if k != "generator"}
    return {**figures, "generator": runs[0]["generator"], "requests": sum(run["requests"] for run in runs),
            "runs": len(runs)}  # fmt: skip


def pinned_cpus(mode: Mode) -> tuple[set[int], set[int]] | None:
    """(the gateway worker's core, the other cores): a worker with a core to itself, the load
    generator, upstream and recorder on the rest, so that they do not take turns on one core.

    None with fewer than two cores, and in production mode with fewer than four: PostgreSQL
    and Redis are not the bench's to pin, and on two cores they would share the worker's,
    which then pays for their context switches (measured: half as much CPU again per request).
    """
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= (4 if mode.production else 2) else None


def generator_figures(levels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The generator's own cost, and the rate it reached against the bare upstream."""
    top = levels[max(levels, key=lambda name: int(name[1:]))]
    client_us = top["client_cpu_us_per_request"]
    return {
        "generator": top["generator"],
        "concurrency": int(max(levels, key=lambda name: int(name[1:]))[1:]),
        "rps_against_upstream": top["direct_rps"],
        "client_cpu_us_per_request": client_us,
        "max_rps_per_core": round(1e6 / client_us, 1) if client_us else None,
    }


async def cache_hits(servers: Servers, total: int) -> dict[str, Any]:
    """Latency of exact-cache hits: one request repeated at concurrency 1."""
    target = servers.through(servers.cached_key, [chat_body("bench-cached", "Cache me: what is 6 times 7?")])
    meter = CpuMeter(servers.gateway_pid)
    run: LoadRun = await python_load(target, 1, total=total, watch_header=CACHE_HEADER)
    cpu_user, cpu_sys = meter.split_ms_per_request(len(run.latencies_ms))
    hits = [ms for ms, tag in zip(run.latencies_ms, run.tags, strict=True) if tag == CACHE_HIT]
    result: dict[str, Any] = {"requests": len(run.latencies_ms), "hits": len(hits)}
    if not hits:
        result["note"] = f"no response carried `{CACHE_HEADER}: {CACHE_HIT}`: the exact cache is not in this build"
        return result
    result.update(
        hit_p50_ms=round(percentile(hits, 0.50), 3),
        hit_p99_ms=round(percentile(hits, 0.99), 3),
        # Every request but the first is a hit, so this is (nearly) CPU per hit.
        gateway_cpu_ms_per_request=round(cpu_user + cpu_sys, 3),
        gateway_sys_ms_per_request=round(cpu_sys, 3),
    )
    return result


async def sample_rss(pid: int, samples: list[tuple[float, float]], started: float) -> None:
    while True:
        samples.append((time.monotonic() - started, rss_mb(pid)))
        await asyncio.sleep(1.0)


def soak_target(servers: Servers) -> Target:
    """Mostly the plain policy; every tenth request a cached one from a fixed pool of prompts."""
    plain = servers.through(servers.plain_key, [chat_body("bench")]).requests[0]
    prompts = [chat_body("bench-cached", f"Soak prompt {i}: what is {i} plus 1?") for i in range(SOAK_CACHED_PROMPTS)]
    requests: list[bytes] = []
    for cached in servers.through(servers.cached_key, prompts).requests:
        requests += [plain] * 9 + [cached]
    return Target("127.0.0.1", servers.gateway_port, requests)


async def soak(servers: Servers, seconds: float) -> dict[str, Any]:
    """Load at concurrency 10 for `seconds`, the flusher running, sampling its and the worker's memory."""
    samples: list[tuple[float, float]] = []
    recorder_samples: list[tuple[float, float]] = []
    with process([sys.executable, "manage.py", "run_recorder"], servers.env) as recorder:
        started = time.monotonic()
        sampler = asyncio.create_task(sample_rss(servers.gateway_pid, samples, started))
        recorder_sampler = asyncio.create_task(sample_rss(recorder.pid, recorder_samples, started))
        meter = CpuMeter(servers.gateway_pid)
        run = await python_load(soak_target(servers), SOAK_CONCURRENCY, seconds=seconds)
        cpu_ms = meter.ms_per_request(len(run.latencies_ms))
        sampler.cancel()
        recorder_sampler.cancel()
    summary = summarise(run)
    recorder_second_half = [s for s in recorder_samples if s[0] >= seconds / 2]
    second_half = [s for s in samples if s[0] >= seconds / 2]
    return {
        "seconds": seconds,
        "concurrency": SOAK_CONCURRENCY,
        "requests": summary.requests,
        "rps": round(summary.rps, 1),
        "non_2xx": summary.non_2xx,
        "p50_ms": round(summary.p50_ms, 3),
        "p99_ms": round(summary.p99_ms, 3),
        "gateway_cpu_ms_per_request": round(cpu_ms, 3),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_peak_mb": round(max(m for _, m in samples), 1),
        "rss_high_water_mb": round(peak_rss_mb(servers.gateway_pid), 1),
        # + 0.0: a flat line reads 0.0, not -0.0.
        "rss_slope_mb_per_min": round(slope_mb_per_min(samples), 3) + 0.0,
        "rss_slope_second_half_mb_per_min": round(slope_mb_per_min(second_half), 3) + 0.0,
        "recorder_rss_start_mb": round(recorder_samples[0][1], 1),
        "recorder_rss_end_mb": round(recorder_samples[-1][1], 1),
        "recorder_rss_slope_second_half_mb_per_min": round(slope_mb_per_min(recorder_second_half), 3) + 0.0,
        # At most ~120 points, for a chart.
        "rss_samples": [[round(t, 1), round(m, 1)] for t, m in samples[:: max(1, len(samples) // 120)]],
    }


async def first_tokens(servers: Servers, total: int) -> dict[str, Any]:
    """Time to the first streamed event, through the gateway and from the upstream directly, at c=1."""
    body = {**chat_body("bench"), "stream": True}
    direct = servers.direct(body).requests[0]
    through = servers.through(servers.plain_key, [body]).requests[0]
    await first_token_ms("127.0.0.1", servers.gateway_port, through, 20)  # warm-up
    direct_ms = await first_token_ms("127.0.0.1", servers.upstream_port, direct, total)
    through_ms = await first_token_ms("127.0.0.1", servers.gateway_port, through, total)
    return {"requests": total, **first_token_summary(through_ms, direct_ms)}


# The API rows: a request with a tool (the cheap model calls it, and the gateway checks the call
# against the tool's schema) and an embeddings request, at c=1, through the gateway and direct.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_CALL = 'cheap:get_weather:{"city": "Paris"}'


async def api_rows(servers: Servers, total: int) -> dict[str, Any]:
    """p50/p99 of a tools request and an embeddings request at c=1, and the gateway's overhead on each."""
    tools: dict[str, object] = {**chat_body("bench"), "tools": [WEATHER_TOOL], "tool_choice": "required"}
    embeddings: dict[str, object] = {"model": "bench", "input": ["What is 6 times 7?", "Answer briefly."]}
    rows = {}
    for name, path, body in (("tools", "/v1/chat/completions", tools), ("embeddings", "/v1/embeddings", embeddings)):
        direct = Target("127.0.0.1", servers.upstream_port, [encode_request("up", path, {**body, "model": "cheap"})])
        auth = {"Authorization": f"Bearer {servers.plain_key}"}
        through = Target("127.0.0.1", servers.gateway_port, [encode_request("gw", path, body, auth)])
        await python_load(through, 1, total=50)  # warm-up
        gw, up = (
            summarise(await python_load(through, 1, total=total)),
            summarise(await python_load(direct, 1, total=total)),
        )
        if gw.non_2xx or up.non_2xx:
            raise RuntimeError(f"non-2xx answers to the {name} row: gateway {gw.non_2xx}, direct {up.non_2xx}")
        rows[name] = {
            "requests": gw.requests,
            "gateway_p50_ms": round(gw.p50_ms, 3),
            "gateway_p99_ms": round(gw.p99_ms, 3),
            "overhead_p50_ms": round(gw.p50_ms - up.p50_ms, 3),
            "overhead_p99_ms": round(gw.p99_ms - up.p99_ms, 3),
        }
    return rows


async def levels_measured(servers: Servers, args: argparse.Namespace, use_wrk: bool) -> dict[str, Any]:
    warm = servers.through(servers.plain_key, [chat_body("bench")])
    await python_load(warm, 4, total=300)  # config cache, connection pools
    await python_load(servers.direct(chat_body("bench")), 4, total=300)
    levels: dict[str, Any] = {}
    for c in args.levels:
        runs = [await overhead_level(servers, c, args.seconds, use_wrk) for _ in range(args.runs)]
        levels[f"c{c}"] = median_figures(runs)
        print(f"c={c}: {json.dumps(levels[f'c{c}'])}", flush=True)
    return levels


async def measure(servers: Servers, args: argparse.Namespace, use_wrk: bool) -> dict[str, Any]:
    levels = await levels_measured(servers, args, use_wrk)
    results: dict[str, Any] = {**levels, "generator": generator_figures(levels)}
    results["cache"] = await cache_hits(servers, args.cache_requests)
    print(f"cache: {json.dumps(results['cache'])}", flush=True)
    results["streaming"] = await first_tokens(servers, args.streamed_requests)
    print(f"streaming: {json.dumps(results['streaming'])}", flush=True)
    results["api"] = await api_rows(servers, args.cache_requests)
    print(f"api: {json.dumps(results['api'])}", flush=True)
    if args.soak_seconds > 0:
        results["soak"] = await soak(servers, args.soak_seconds)
        print(f"soak: {json.dumps({k: v for k, v in results['soak'].items() if k != 'rss_samples'})}", flush=True)
    return results


def record_backlog(servers: Servers) -> int:
    """Records in the production record stream not yet stored (the recorder deletes what it stored)."""
    import redis

    client = redis.Redis.from_url(servers.env["REDIS_URL"])
    return int(client.xlen(servers.env["CASCADEOPS_RECORD_STREAM"]))


async def drained_after(servers: Servers, limit_s: float) -> float | None:
    """Seconds until the record stream is empty; None if it is not within `limit_s`."""
    started = time.monotonic()
    while record_backlog(servers) > 0:
        if time.monotonic() - started > limit_s:
            return None
        await asyncio.sleep(0.05)
    return round(time.monotonic() - started, 2)


async def measure_production(servers: Servers, args: argparse.Namespace, use_wrk: bool) -> dict[str, Any]:
    """The levels with the recorder running beside the worker, its throughput and backlog, streaming."""
    with process([sys.executable, "manage.py", "run_recorder"], servers.env) as recorder:
        # Counted once the recorder has started and stored a first record: its start-up is not
        # what it spends per record.
        await python_load(servers.through(servers.plain_key, [chat_body("bench")]), 1, total=1)
        await drained_after(servers, DRAIN_LIMIT_S)
        cpu_before = cpu_seconds(recorder.pid)
        levels = await levels_measured(servers, args, use_wrk)
        # Then the top level's load held for a while: how far behind the recorder falls, and how
        # soon it has caught up once the load stops.
        top = args.levels[-1]
        sustained = await python_load(servers.through(servers.plain_key, [chat_body("bench")]), top,
                                      seconds=args.recorder_seconds)  # fmt: skip
        backlog = record_backlog(servers)
        drained_s = await drained_after(servers, DRAIN_LIMIT_S)
        recorder_cpu_s = cpu_seconds(recorder.pid) - cpu_before
        # Every gateway request of the levels and the sustained load was recorded, and the warm-up's 300 too.
        stored = sum(level["requests"] for level in levels.values()) + len(sustained.latencies_ms) + 300
        results: dict[str, Any] = {**levels}
        results["recorder"] = {
            "records_stored": stored,
            "cpu_s": round(recorder_cpu_s, 3),
            "records_per_cpu_second": round(stored / recorder_cpu_s, 1) if recorder_cpu_s else None,
            "sustained_seconds": args.recorder_seconds,
            "sustained_rps": round(summarise(sustained).rps, 1),
            f"backlog_after_c{top}": backlog,
            "drained_after_s": drained_s,
        }
        print(f"recorder: {json.dumps(results['recorder'])}", flush=True)
        results["streaming"] = await first_tokens(servers, args.streamed_requests)
        print(f"streaming: {json.dumps(results['streaming'])}", flush=True)
        results["api"] = await api_rows(servers, args.cache_requests)
        print(f"api: {json.dumps(results['api'])}", flush=True)
    if args.soak_seconds > 0:
        results["soak"] = await soak(servers, args.soak_seconds)
        print(f"soak: {json.dumps({k: v for k, v in results['soak'].items() if k != 'rss_samples'})}", flush=True)
    return results


def human_summary(results: dict[str, Any]) -> str:
    meta, g = results["meta"], results["generator"]
    lines = [f"{meta['gateway']}; {meta['machine']}; generator {g['generator']}"]
    lines += levels_table(results)
    lines.append(
        f"generator: {g['client_cpu_us_per_request']:.0f} µs CPU/request (≈{g['max_rps_per_core']} RPS per core); "
        f"{g['rps_against_upstream']:.0f} RPS against the bare upstream at c={g['concurrency']}"
    )
    lines.append(cache_line(results["cache"]))
    lines.append(streaming_line(results["streaming"]))
    if "soak" in results:
        lines.append(soak_line(results["soak"]))
    production = results.get("production")
    if production is None:
        lines.append(f"production mode: not measured ({results.get('production_note', '')})")
        return "\n".join(lines)
    lines.append(f"production mode: {meta['production']}")
    lines += levels_table(production)
    lines.append(recorder_line(production["recorder"]))
    lines.append(streaming_line(production["streaming"]))
    if "soak" in production:
        lines.append(soak_line(production["soak"]))
    return "\n".join(lines)


def levels_table(results: dict[str, Any]) -> list[str]:
    lines = ["  c  overhead p50/p99 ms  gateway RPS (direct)  CPU ms/req: gateway (of it system), upstream"]
    for name in (k for k in results if k.startswith("c") and k[1:].isdigit()):
        r = results[name]
        overhead = f"{r['overhead_p50_ms']:7.2f} / {r['overhead_p99_ms']:<8.2f}"
        rates = f"{r['rps']:9.0f} ({r['direct_rps']:6.0f})"
        cpu = f"{r['gateway_cpu_ms_per_request']:.2f} ({r['gateway_sys_ms_per_request']:.2f})"
        lines.append(f"{name[1:]:>3}  {overhead}  {rates}  {cpu:>14}, {r['upstream_cpu_ms_per_request']:.2f}")
    return lines


def streaming_line(streaming: dict[str, Any]) -> str:
    return (
        f"streaming, time to first event: p50 {streaming['gateway_p50_ms']} ms (direct {streaming['direct_p50_ms']}), "
        f"overhead p50 {streaming['overhead_p50_ms']} ms, p99 {streaming['overhead_p99_ms']} ms"
    )


def recorder_line(recorder: dict[str, Any]) -> str:
    backlog = next(v for k, v in recorder.items() if k.startswith("backlog_after"))
    drained = recorder["drained_after_s"]
    return (
        f"recorder: {recorder['records_stored']} records in {recorder['cpu_s']} s CPU "
        f"({recorder['records_per_cpu_second']} records per CPU second); backlog {backlog} after "
        f"{recorder['sustained_seconds']:.0f} s at {recorder['sustained_rps']:.0f} requests/s, "
        + (f"empty {drained} s later" if drained is not None else f"not empty within {DRAIN_LIMIT_S:.0f} s")
    )


def cache_line(cache: dict[str, Any]) -> str:
    if not cache.get("hits"):
        return f"cache hits: none ({cache.get('note', '')})"
    return (
        f"cache hits: p50 {cache['hit_p50_ms']} ms, p99 {cache['hit_p99_ms']} ms, "
        f"{cache['gateway_cpu_ms_per_request']} ms CPU/request ({cache['hits']}/{cache['requests']} hits)"
    )


def soak_line(result: dict[str, Any]) -> str:
    return (
        f"soak {result['seconds']:.0f} s at c={result['concurrency']}: {result['requests']} requests, "
        f"{result['non_2xx']} non-2xx; RSS start {result['rss_start_mb']} MB, end {result['rss_end_mb']} MB, "
        f"peak {result['rss_peak_mb']} MB; slope {result['rss_slope_mb_per_min']} MB/min "
        f"(second half {result['rss_slope_second_half_mb_per_min']})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/gateway.json")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per measurement")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--cache-requests", type=int, default=2000, help="repeats of the cached request")
    parser.add_argument("--streamed-requests", type=int, default=STREAMED_REQUESTS, help="for time to first token")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    parser.add_argument("--loadgen", choices=["auto", "python", "wrk"], default="auto",
                        help="auto: wrk when it is on the PATH, else the Python client")  # fmt: skip
    parser.add_argument("--production", choices=["auto", "on", "off"], default="auto",
                        help="auto: when the database and Redis below answer")  # fmt: skip
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
                        help="production mode's PostgreSQL database; emptied, created if missing")  # fmt: skip
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="production mode's Redis database; emptied")  # fmt: skip
    parser.add_argument("--recorder-seconds", type=float, default=60.0,
                        help="production mode: the top level held this long, then the recorder's backlog")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs per level; each figure is their median")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave the gateway worker unpinned (default: a core of its own)")  # fmt: skip
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    return args


def pinned_for(mode: Mode, args: argparse.Namespace) -> set[int] | None:
    """The gateway worker's core in `mode` (None: unpinned); pins this process to the others."""
    pinned = pinned_cpus(mode) if args.pin else None
    if pinned is None:
        return None
    gateway_cpus, others = pinned
    os.sched_setaffinity(0, others)  # this process and what it starts, but the gateway
    return gateway_cpus


def production_mode(args: argparse.Namespace) -> tuple[Mode | None, str]:
    """Production mode's servers, or None and why not."""
    if args.production == "off":
        return None, "--production off"
    try:
        servers_answer(args.database_url, args.redis_url)
    except Exception as exc:
        if args.production == "on":
            raise
        return None, f"{type(exc).__name__}: {exc}".strip()
    return Mode("production", redis_url=args.redis_url, database_url=args.database_url), ""


def servers_answer(database_url: str, redis_url: str) -> None:
    """Raise unless Redis answers and the database exists (created when the server lacks it)."""
    import psycopg
    import redis
    from psycopg import sql

    redis.Redis.from_url(redis_url).ping()
    server, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    production, why_not = production_mode(args)
    all_cpus = os.sched_getaffinity(0)
    pinning = {"embedded": pinned_for(EMBEDDED, args)}
    with bench_servers(EMBEDDED, gateway_cpus=pinning["embedded"]) as servers:
        results = asyncio.run(measure(servers, args, use_wrk))
    if production is not None:
        print("production mode:", flush=True)
        os.sched_setaffinity(0, all_cpus)
        pinning["production"] = pinned_for(production, args)
        with bench_servers(production, gateway_cpus=pinning["production"]) as servers:
            results["production"] = asyncio.run(measure_production(servers, args, use_wrk))
    else:
        results["production_note"] = why_not
    results["meta"] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "gateway": "1 uvicorn worker, embedded mode (SQLite, record spool)",
        "production": "1 uvicorn worker, PostgreSQL + Redis, a team budget and a rate limit on the key, "
        "run_recorder running",
        "seconds_per_measurement": args.seconds,
        "runs_per_level": args.runs,
        "gateway_cpus": {mode: sorted(cpus) if cpus else "unpinned" for mode, cpus in pinning.items()},
    }
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(human_summary(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
