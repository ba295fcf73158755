"""The dashboard's websocket, through the real ASGI application and its auth middleware."""

from __future__ import annotations

import json

import pytest
import websockets.exceptions
import websockets.sync.client
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from cascadeops.asgi import application
from dashboard.live import groups
from tests.dashboard.traffic import Traffic

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_ticks(settings):
    settings.CASCADEOPS_DASHBOARD_TICK_SECONDS = 0.1


def headers_for(user) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is None:
        return headers
    client = Client()
    client.force_login(user)
    return [*headers, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def connected(user, *subscriptions: dict) -> WebsocketCommunicator:
    headers = await sync_to_async(headers_for)(user)
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
    accepted, _ = await communicator.connect()
    assert accepted
    for subscription in subscriptions:
        await communicator.send_json_to(subscription)
    return communicator


async def next_tick_with_traffic(communicator: WebsocketCommunicator, timeout: float = 3) -> dict:
    """The next tick that has minute points; a new ticker first sends every group once, maybe empty."""
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == "tick" and message["minute"]:
            return message


async def test_a_page_sees_routed_requests_in_the_next_tick(operator):
    traffic = await database_sync_to_async(Traffic.for_new_policy)()
    communicator = await connected(operator, {"subscribe": "all"}, {"subscribe": "alerts"})
    await communicator.receive_nothing(timeout=0.3)

    await database_sync_to_async(traffic.send)(4, escalated=True)

    tick = await next_tick_with_traffic(communicator)
    assert tick["scope"] == "all"
    assert tick["minute"][-1]["requests"] == 4
    assert tick["minute"][-1]["escalation_rate"] == 100.0
    await communicator.receive_nothing(timeout=0.3)  # nothing changed since
    await communicator.disconnect()


async def test_a_policy_page_gets_only_its_policy(operator):
    demo = await database_sync_to_async(Traffic.for_new_policy)()
    other = await database_sync_to_async(Traffic.for_new_policy)("other", app="search")
    communicator = await connected(operator, {"subscribe": "policy", "policy": other.policy.id})

    await database_sync_to_async(demo.send)(3)
    await database_sync_to_async(other.send)(1)

    tick = await next_tick_with_traffic(communicator)
    assert tick["scope"] == other.policy.id
    assert tick["minute"][-1]["requests"] == 1
    await communicator.disconnect()


async def test_an_anonymous_websocket_is_refused():
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)

    accepted, _ = await communicator.connect()

    assert not accepted
    await communicator.disconnect()


async def test_a_user_without_the_dashboard_permission_is_refused(django_user_model):
    user = await database_sync_to_async(django_user_model.objects.create_user)("intern", password="x")
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=await sync_to_async(headers_for)(user))

    accepted, _ = await communicator.connect()

    assert not accepted


async def test_a_foreign_origin_is_refused(operator):
    headers = [(b"origin", b"http://evil.example"), *(await sync_to_async(headers_for)(operator))[1:]]
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)

    accepted, _ = await communicator.connect()

    assert not accepted


async def test_an_unknown_subscription_is_answered_with_an_error(operator):
    communicator = await connected(operator, {"subscribe": "policy", "policy": "1; DROP TABLE"})

    assert await communicator.receive_json_from(timeout=2) == {"type": "error", "message": "Unknown subscription."}
    await communicator.disconnect()


def test_group_names_come_from_one_place():
    assert groups.for_subscription({"subscribe": "all"}) == groups.for_scope(None) == "dashboard.all"
    assert groups.for_subscription({"subscribe": "policy", "policy": 7}) == "dashboard.policy.7"
    assert groups.for_subscription({"subscribe": "alerts"}) == groups.ALERTS
    assert groups.for_subscription({"subscribe": "policy", "policy": True}) is None
    assert groups.for_subscription(["all"]) is None


def test_the_websocket_of_a_user_deactivated_mid_stream_is_closed(live_gateway, operator, settings):
    """A real websocket to a real server: the stream stops once the user is deactivated."""
    settings.CASCADEOPS_DASHBOARD_TICK_SECONDS = 0.1
    settings.CASCADEOPS_DASHBOARD_RECHECK_SECONDS = 0.2
    cookie = headers_for(operator)[-1][1].decode()
    url = live_gateway.url.replace("http://", "ws://") + "/ws/dashboard/"
    with websockets.sync.client.connect(url, additional_headers={"Cookie": cookie, "Origin": live_gateway.url}) as ws:
        ws.send(json.dumps({"subscribe": "all"}))
        Traffic.for_new_policy().send(2)
        assert json.loads(ws.recv(timeout=10))["type"] == "tick"  # it streams

        operator.is_active = False
        operator.save(update_fields=["is_active"])

        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
