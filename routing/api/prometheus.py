"""`GET /metrics`: Prometheus' scrape target, for a bearer token or an allowed address.

Served by the lean `/v1/` handler (no middleware, no `ALLOWED_HOSTS` check). Allowed with
`Authorization: Bearer <CASCADEOPS_METRICS_TOKEN>`, or without credentials from an address
in `CASCADEOPS_METRICS_ALLOW`; a wrong token is a 401, no token from elsewhere a 401 when a
token is configured, else a 403. See docs/hotpath.md.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from routing import metrics
from routing.limits.breakers import breaker_states
from routing.records import buffers

logger = logging.getLogger(__name__)

BREAKER_STATES = ("closed", "open", "half_open")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """The exposition, or 401/403/405."""
    if request.method != "GET":
        return HttpResponse("Use GET.\n", status=405, content_type="text/plain")
    refusal = access_refusal(request)
    if refusal is not None:
        return refusal
    extra = [*await breaker_gauges(), await queue_gauge()]
    body = await asyncio.to_thread(metrics.exposition, extra)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def access_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics, else the response that refuses it."""
    token: str = settings.CASCADEOPS_METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme:
        if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return None
        return _unauthorized("The metrics token is wrong.")
    if address_allowed(request.META.get("REMOTE_ADDR", ""), tuple(settings.CASCADEOPS_METRICS_ALLOW)):
        return None
    if token:
        return _unauthorized("Send the metrics token as 'Authorization: Bearer <token>'.")
    return HttpResponse("This address may not read the metrics.\n", status=403, content_type="text/plain")


def _unauthorized(message: str) -> HttpResponse:
    response = HttpResponse(f"{message}\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def address_allowed(address: str, allow: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in allowed_networks(allow))


@functools.cache
def allowed_networks(allow: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in allow if cidr.strip())


async def breaker_gauges() -> list[Metric]:
    """One 0/1 gauge per endpoint and breaker state, as the shared breakers see them now."""
    states = await _breaker_states()
    gauge = GaugeMetricFamily(
        "cascadeops_breaker_state", "Circuit breaker state by endpoint (1: in this state)", labels=["endpoint", "state"]
    )
    for endpoint, state in sorted(states.items()):
        state = state.replace("-", "_")
        for candidate in dict.fromkeys((*BREAKER_STATES, state)):
            gauge.add_metric([endpoint, candidate], 1.0 if candidate == state else 0.0)
    return [gauge]


async def _breaker_states() -> dict[str, str]:
    try:
        return dict(await breaker_states())
    except Exception:
        logger.exception("Could not read the breaker states for /metrics")
        return {}


async def queue_gauge() -> Metric:
    depth = await asyncio.to_thread(_queue_depth)
    gauge = GaugeMetricFamily(
        "cascadeops_record_queue_depth", "Request records made durable and not yet stored in the database"
    )
    if depth is not None:
        gauge.add_metric([], float(depth))
    return gauge


def _queue_depth() -> int | None:
    try:
        return buffers.queue_depth()
    except Exception:
        logger.exception("Could not read the record queue's depth for /metrics")
        return None
