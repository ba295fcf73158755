"""The price book is the one source of prices: saving an endpoint's other fields never writes one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import PriceBookEntry
from routing.models import ModelEndpoint
from testing.factories import replay_endpoints

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/routing/model-endpoints/"
PASSWORD = "correct-horse-battery"


def scheduled_price_took_effect(endpoint: ModelEndpoint) -> PriceBookEntry:
    """The endpoint's first price two hours ago, and a scheduled one that took effect an hour ago."""
    now = timezone.now()
    PriceBookEntry.objects.filter(endpoint=endpoint).update(effective_from=now - timedelta(hours=2))
    return PriceBookEntry.objects.create(
        endpoint=endpoint,
        effective_from=now - timedelta(hours=1),
        input_price_per_m=Decimal("0.30"),
        output_price_per_m=Decimal("0.40"),
    )


def prices(endpoint: ModelEndpoint) -> list[tuple[Decimal, Decimal]]:
    entries = PriceBookEntry.objects.filter(endpoint=endpoint).order_by("effective_from")
    return [(e.input_price_per_m, e.output_price_per_m) for e in entries]


def test_it_keeps_a_scheduled_price_when_the_display_name_is_patched(api: APIClient) -> None:
    mixtral, _ = replay_endpoints()
    scheduled = scheduled_price_took_effect(mixtral)

    response = api.patch(f"{ENDPOINTS}{mixtral.pk}/", {"display_name": "Mixtral"}, format="json")

    assert response.status_code == 200, response.data
    assert prices(mixtral) == [(Decimal("0.60"), Decimal("0.60")), (Decimal("0.30"), Decimal("0.40"))]
    assert (response.data["input_price_per_m"], response.data["output_price_per_m"]) == ("0.300000", "0.400000")
    assert response.data["price_in_force"]["version"] == scheduled.pk


def test_it_keeps_a_scheduled_price_when_a_stale_row_is_saved_in_code(db: None) -> None:
    mixtral, _ = replay_endpoints()
    scheduled_price_took_effect(mixtral)
    row = ModelEndpoint.objects.get(pk=mixtral.pk)  # its columns still say 0.60

    row.display_name = "Mixtral"
    row.save()

    assert len(prices(mixtral)) == 2


def test_the_registry_api_shows_the_price_in_force_and_the_next_one(api: APIClient) -> None:
    mixtral, _ = replay_endpoints()
    start = timezone.now() + timedelta(days=1)
    PriceBookEntry.objects.create(
        endpoint=mixtral, effective_from=start, input_price_per_m=Decimal("0.10"), output_price_per_m=Decimal("0.20")
    )

    shown = api.get(f"{ENDPOINTS}{mixtral.pk}/").data

    assert shown["price_in_force"]["input_price_per_m"] == "0.600000"
    assert shown["next_price"]["input_price_per_m"] == "0.100000"
    assert shown["next_price"]["output_price_per_m"] == "0.200000"
    assert shown["input_price_per_m"] == "0.600000"


def test_a_price_written_as_it_is_in_force_adds_nothing(api: APIClient) -> None:
    mixtral, _ = replay_endpoints()
    scheduled_price_took_effect(mixtral)
    shown = api.get(f"{ENDPOINTS}{mixtral.pk}/").data

    response = api.put(f"{ENDPOINTS}{mixtral.pk}/", {**shown, "display_name": "Mixtral"}, format="json")

    assert response.status_code == 200, response.data
    assert len(prices(mixtral)) == 2


def test_a_changed_price_is_written_from_now_over_the_price_in_force(api: APIClient) -> None:
    mixtral, _ = replay_endpoints()
    scheduled_price_took_effect(mixtral)

    # Back to the old price, which the row's columns still hold: a change all the same.
    response = api.patch(f"{ENDPOINTS}{mixtral.pk}/", {"input_price_per_m": "0.60"}, format="json")

    assert response.status_code == 200, response.data
    assert prices(mixtral)[-1] == (Decimal("0.60"), Decimal("0.40"))  # output: the price in force's
    newest = PriceBookEntry.objects.filter(endpoint=mixtral).latest("effective_from")
    assert timezone.now() - newest.effective_from < timedelta(minutes=1)
    assert response.data["price_in_force"]["version"] == newest.pk


@pytest.fixture
def operator_client(client, operator):
    assert client.login(username="operator", password=PASSWORD)
    return client


def admin_form(client, endpoint: ModelEndpoint, **fields: str) -> dict[str, str]:
    """The admin change form of `endpoint` as the operator is shown it, with `fields` changed."""
    form = client.get(f"/admin/routing/modelendpoint/{endpoint.pk}/change/").context["adminform"].form
    data = {name: "" if form[name].value() is None else str(form[name].value()) for name in form.fields}
    return data | {"options": "{}", "enabled": "on", "fallback_endpoint": ""} | fields


def test_the_admin_shows_the_price_in_force_and_saving_a_name_keeps_it(operator_client) -> None:
    mixtral, _ = replay_endpoints()
    scheduled_price_took_effect(mixtral)
    form = admin_form(operator_client, mixtral, display_name="Mixtral")
    assert Decimal(form["input_price_per_m"]) == Decimal("0.30")

    response = operator_client.post(f"/admin/routing/modelendpoint/{mixtral.pk}/change/", form)

    assert response.status_code == 302
    assert len(prices(mixtral)) == 2
    listing = operator_client.get("/admin/routing/modelendpoint/").content.decode()
    assert "$0.300000 / $0.400000" in listing


def test_a_price_changed_in_the_admin_is_written_from_now(operator_client) -> None:
    mixtral, _ = replay_endpoints()
    scheduled_price_took_effect(mixtral)

    form = admin_form(operator_client, mixtral, output_price_per_m="0.50")
    response = operator_client.post(f"/admin/routing/modelendpoint/{mixtral.pk}/change/", form)

    assert response.status_code == 302
    assert prices(mixtral)[-1] == (Decimal("0.30"), Decimal("0.50"))
