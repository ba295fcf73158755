"""Model endpoints may take secrets only from the deployment's variables and call only allowed hosts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from routing.config.snapshots import endpoint_snapshot
from routing.engine.errors import ProviderMisconfigured
from routing.engine.types import CredentialsAllowList, EndpointSnapshot, ProviderType
from routing.models import ModelEndpoint
from routing.providers.openai_compat import OpenAICompatProvider
from testing.factories import openai_endpoint
from testing.upstream import running_upstream
from tests.routing.test_providers_openai_compat import CHAT

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/routing/model-endpoints/"


def endpoint(**fields: Any) -> ModelEndpoint:
    values: dict[str, Any] = {
        "name": "openai",
        "provider_kind": "openai_compat",
        "model_id": "gpt-4o-mini",
        "base_url": "http://127.0.0.1:8000/v1",
        "input_price_per_m": Decimal("0.15"),
        "output_price_per_m": Decimal("0.60"),
        **fields,
    }
    return ModelEndpoint(**values)


def payload(**fields: Any) -> dict[str, Any]:
    return {
        "name": "openai",
        "provider_kind": "openai_compat",
        "model_id": "gpt-4o-mini",
        "base_url": "http://127.0.0.1:8000/v1",
        "input_price_per_m": "0.15",
        "output_price_per_m": "0.60",
        **fields,
    }


def snapshot(base_url: str, credentials_env: str, allowed: CredentialsAllowList) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=1,
        name="cheap-tier",
        provider_kind=ProviderType.OPENAI_COMPAT,
        model_id="cheap",
        input_price_per_m=Decimal("0.50"),
        output_price_per_m=Decimal("1.50"),
        base_url=base_url,
        credentials_env=credentials_env,
        credentials_allowed=allowed,
    )


# --- the model (the admin runs its full_clean) --------------------------------------------


def test_the_model_refuses_a_variable_outside_the_allow_list() -> None:
    with pytest.raises(ValidationError) as caught:
        endpoint(credentials_env="DATABASE_URL").full_clean()

    assert "CASCADEOPS_PROVIDER_" in str(caught.value.message_dict["credentials_env"])


def test_the_model_takes_a_variable_with_the_prefix_or_on_the_list(settings) -> None:
    endpoint(credentials_env="CASCADEOPS_PROVIDER_OPENAI").full_clean()

    settings.CASCADEOPS_CREDENTIALS_ENV_ALLOW = ["OPENAI_API_KEY"]
    endpoint(credentials_env="OPENAI_API_KEY").full_clean()
    with pytest.raises(ValidationError, match="OPENAI_API_KEY"):
        endpoint(credentials_env="AWS_SECRET_ACCESS_KEY").full_clean()


def test_an_empty_prefix_allows_only_the_listed_variables(settings) -> None:
    settings.CASCADEOPS_CREDENTIALS_ENV_PREFIX = ""
    settings.CASCADEOPS_CREDENTIALS_ENV_ALLOW = ["OPENAI_API_KEY"]

    endpoint(credentials_env="OPENAI_API_KEY").full_clean()
    with pytest.raises(ValidationError):
        endpoint(credentials_env="CASCADEOPS_PROVIDER_OPENAI").full_clean()


def test_the_model_refuses_a_base_url_at_the_metadata_service() -> None:
    with pytest.raises(ValidationError) as caught:
        endpoint(base_url="http://169.254.169.254/latest/meta-data").full_clean()

    assert "metadata" in str(caught.value.message_dict["base_url"])


def test_a_bedrock_region_is_not_a_url_to_check() -> None:
    endpoint(provider_kind="bedrock", base_url="eu-central-1", model_id="anthropic.claude").full_clean()
    with pytest.raises(ValidationError):
        endpoint(provider_kind="bedrock", base_url="http://169.254.169.254/", model_id="x").full_clean()


# --- the management API -------------------------------------------------------------------


def test_rest_refuses_database_url_as_credentials(api: APIClient) -> None:
    response = api.post(ENDPOINTS, payload(credentials_env="DATABASE_URL"), format="json")

    assert response.status_code == 400
    assert "CASCADEOPS_CREDENTIALS_ENV_PREFIX" in str(response.data["credentials_env"])
    assert not ModelEndpoint.objects.exists()


def test_rest_refuses_a_metadata_base_url_on_create_and_on_update(api: APIClient) -> None:
    response = api.post(ENDPOINTS, payload(base_url="http://169.254.169.254/v1"), format="json")
    assert response.status_code == 400
    assert "metadata" in str(response.data["base_url"])

    created = api.post(ENDPOINTS, payload(credentials_env="CASCADEOPS_PROVIDER_OPENAI"), format="json")
    assert created.status_code == 201, created.data
    url = f"{ENDPOINTS}{created.data['id']}/"
    response = api.patch(url, {"base_url": "http://[fd00:ec2::254]/v1"}, format="json")
    assert response.status_code == 400
    assert ModelEndpoint.objects.get().base_url == "http://127.0.0.1:8000/v1"


# --- at call time -------------------------------------------------------------------------


async def test_the_provider_reads_no_variable_outside_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://user:hunter2@db/cascadeops")
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(snapshot(upstream.base_url, "DATABASE_URL", CredentialsAllowList()))
        with pytest.raises(ProviderMisconfigured, match="not one this deployment allows") as caught:
            await provider.complete(CHAT, max_tokens=16)
        await provider.aclose()

    assert "hunter2" not in str(caught.value)
    assert upstream.calls.total() == 0


async def test_the_provider_sends_a_listed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-listed")
    allowed = CredentialsAllowList(names=frozenset({"OPENAI_API_KEY"}))
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(snapshot(upstream.base_url, "OPENAI_API_KEY", allowed))
        await provider.complete(CHAT, max_tokens=16)
        await provider.aclose()

    assert upstream.last_headers["authorization"] == "Bearer sk-listed"


def test_snapshots_carry_the_deployments_allow_list_not_the_rows(settings) -> None:
    settings.CASCADEOPS_CREDENTIALS_ENV_PREFIX = "ACME_LLM_"
    settings.CASCADEOPS_CREDENTIALS_ENV_ALLOW = ["OPENAI_API_KEY"]
    row = openai_endpoint("cheap", "http://127.0.0.1:9/v1", "cheap")

    allowed = endpoint_snapshot(row, timezone.now()).credentials_allowed

    assert allowed == CredentialsAllowList(prefix="ACME_LLM_", names=frozenset({"OPENAI_API_KEY"}))
