"""The shipped Grafana dashboard and Prometheus rules match what `/metrics` exports.

The dashboard JSON loads, every panel and rule has a query, and every metric a query names
is in a real scrape of the gateway (the real server, after real traffic; counters that
traffic here does not reach are counted through `routing.metrics`, as the hot path counts).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from routing import metrics
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import running_upstream

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "cascadeops.json"
RULES = MONITORING / "prometheus" / "cascadeops-alerts.yml"
METRIC = re.compile(r"\bcascadeops_[a-z0-9_]+\b")


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels if panel["type"] != "row" for target in panel["targets"]]


def alert_rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_dashboard_loads_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["uid"] == "cascadeops"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["targets"] and all(t["expr"].strip() for t in p["targets"]) for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_alert_rule_has_a_query_a_severity_and_a_summary() -> None:
    rules = alert_rules()

    assert rules
    for rule in rules:
        assert str(rule["alert"]).startswith("CascadeOps")
        assert str(rule["expr"]).strip()
        assert rule["labels"]["severity"] in ("page", "warning")  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]


@pytest.mark.live
def test_every_query_names_a_metric_that_metrics_exports(live_gateway) -> None:
    exported = scraped_names(live_gateway.url)

    queries = dashboard_queries() + [str(rule["expr"]) for rule in alert_rules()]
    for query in queries:
        named = set(METRIC.findall(query))
        assert named, f"names no CascadeOps metric: {query}"
        assert named <= exported, f"{sorted(named - exported)} are not in /metrics (query: {query})"


def scraped_names(gateway_url: str) -> set[str]:
    """Every sample name of the gateway's exposition after one routed request and one of each refusal."""
    name = f"monitoring-{uuid.uuid4().hex[:8]}"
    with running_upstream() as upstream:
        endpoint = openai_endpoint(f"{name}-cheap", upstream.base_url, "cheap")
        _, plaintext = make_key(make_policy(name, [(endpoint, 0.0)]))
        client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=plaintext, max_retries=0)
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is 2 + 2?"}])
    metrics.record_observed(
        {
            "id": "x", "policy_name": name, "status": "answered", "cache": "exact", "cost": "0",
            "cost_avoided": "0.001", "escalations": 1, "input_tokens": 1, "output_tokens": 1, "attempts": [],
        }
    )  # fmt: skip
    metrics.budget_refused(1, "exhausted")
    metrics.rate_limited("requests")
    metrics.dead_lettered("ValidationError")
    metrics.flush()
    text = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
