"""The request log on a million records: server time and queries of filtered pages (PostgreSQL).

    DATABASE_URL=postgres://… python -m bench.request_log --records 1000000

Generates the records once (`testing.request_log`, one INSERT … SELECT; `--reuse` keeps what
an earlier run made), then asks each page through Django's test client (every middleware,
the session, the template) and times the whole handling in the process: the server's time,
with no network or browser. Writes bench/results/request-log.json. See docs/request-log.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")

from cascadeops.local_state import prepare

prepare()
import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from routing.models import ApiKey, Policy, RequestRecord  # noqa: E402
from testing.request_log import request_log_generate  # noqa: E402

USER = "bench-request-log"


def _pages(policy: Policy) -> dict[str, dict[str, str]]:
    """The filtered pages timed: the common ones, and combinations that narrow a lot."""
    keys = list(ApiKey.objects.filter(policy=policy).order_by("id").values_list("id", flat=True))
    pages = {
        "newest": {},
        "team": {"team": "team-17"},
        "end user": {"end_user": "user-4242"},
        "team + escalated + cost range": {
            "team": "team-17",
            "escalated": "yes",
            "cost_min": "0.0001",
            "cost_max": "0.0009",
        },
        "failed, last 7 days": {"status": "failed", "since": _days_ago(7)},
        "app + latency over 2 s": {"app": "app-123", "latency_min": "2000"},
        "tag": {"tag": "feature=f3"},
        "cached": {"cached": "yes"},
        "search by end user": {"q": "user-77"},
    }
    if keys:
        pages["key"] = {"key": str(keys[len(keys) // 2])}
    return pages


def _days_ago(days: int) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now() - timedelta(days=days)).isoformat()


def _client() -> Client:
    user_model = get_user_model()
    user = user_model.objects.filter(username=USER).first() or user_model.objects.create_superuser(
        USER, f"{USER}@example.com", os.urandom(12).hex()
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


def _time_page(client: Client, query: dict[str, str], repeats: int) -> dict[str, Any]:
    url = reverse("dashboard:requests")
    client.get(url, query)  # warm: connection, templates, plan cache
    times, cpu, sql, queries, rows, status = [], [], [], 0, 0, 0
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as captured:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url, query)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        sql.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
        status, queries = response.status_code, len(captured.captured_queries)
        rows = _rows(response.content.decode())
    times.sort()
    return {
        "query": query,
        "status": status,
        "rows": rows,
        "queries": queries,
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "max_ms": round(times[-1], 1),
        # On a shared machine the wall time is mostly waiting for a core: the process's own CPU
        # time and the database's time (as the driver saw it) say what the page itself costs.
        "cpu_median_ms": round(statistics.median(cpu), 1),
        "sql_median_ms": round(statistics.median(sql), 1),
    }


def _rows(html: str) -> int:
    """Rows of the log's table, read from the page (the test client keeps no context outside tests)."""
    body = html.partition('id="request-log"')[2].partition("</tbody>")[0]
    return body.count("<tr>") - 1 if 'colspan="9"' not in body else 0  # less the header row


def _next_page(client: Client, query: dict[str, str], repeats: int) -> dict[str, Any]:
    """Page 2 of a filter: the cursor keeps it as fast as page 1."""
    html = client.get(reverse("dashboard:requests"), query).content.decode()
    found = re.search(r'href="\?([^"]*)" rel="next"', html)
    if not found:
        return {}
    after = parse_qs(unescape(found.group(1)))["after"][0]
    return _time_page(client, {**query, "after": after}, repeats)


def _policy(records: int, reuse: bool) -> Policy:
    existing = Policy.objects.filter(name__startswith="log-bench-").order_by("-id").first()
    if reuse and existing is not None and RequestRecord.objects.filter(policy=existing).count() >= records:
        return existing
    started = time.perf_counter()
    generated = request_log_generate(records)
    print(f"generated {records:,} records in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return generated.policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the records an earlier run generated")
    parser.add_argument("--out", default="bench/results/request-log.json")
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench.request_log needs PostgreSQL (DATABASE_URL); skipped.", file=sys.stderr)
        return
    call_command("migrate", verbosity=0)
    policy = _policy(args.records, args.reuse)
    client = _client()
    results = {name: _time_page(client, query, args.repeats) for name, query in _pages(policy).items()}
    results["team, page 2"] = _next_page(client, {"team": "team-17"}, args.repeats)
    report = {
        "records": RequestRecord.objects.count(),
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "pages": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['records']:,} records; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, page in results.items():
        print(
            f"{name:30} {page.get('median_ms', '-'):>7} ms median {page.get('p95_ms', '-'):>7} ms p95 "
            f"{page.get('cpu_median_ms', '-'):>6} ms CPU {page.get('sql_median_ms', '-'):>6} ms SQL "
            f"{page.get('queries', '-')} queries {page.get('rows', '-')} rows"
        )


if __name__ == "__main__":
    main()
