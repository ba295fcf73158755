"""The embedded demo: replayed Mixtral → replayed GPT-4, an admin login and an API key.

`make run` calls `seed_demo` every time; it only creates what is missing, and keeps the
generated admin password and demo key in `var/` so it can print them on every start.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from routing.choices import ProviderKind
from routing.models import ApiKey, ModelEndpoint, Policy, hash_api_key
from routing.policies import services

DEMO_POLICY = "demo"
ADMIN_USERNAME = "admin"
# Public list prices of the models whose answers the demo replays (USD per 1M tokens).
MIXTRAL_PRICE = Decimal("0.60")
GPT4_INPUT_PRICE = Decimal("10.00")
GPT4_OUTPUT_PRICE = Decimal("30.00")


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str
    api_key: str


def credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


@transaction.atomic
def demo_seed(*, replay_latency_ms: int = 0) -> DemoCredentials:
    """Create the demo endpoints, policy, admin user and API key where missing."""
    saved = _saved_credentials()
    mixtral = _endpoint(
        "replay-mixtral", "Mixtral 8x7B (replay)", "mixtral", MIXTRAL_PRICE, MIXTRAL_PRICE, replay_latency_ms
    )
    gpt4 = _endpoint("replay-gpt-4", "GPT-4 (replay)", "gpt-4", GPT4_INPUT_PRICE, GPT4_OUTPUT_PRICE, replay_latency_ms)
    policy = Policy.objects.filter(name=DEMO_POLICY).first() or services.policy_create(
        name=DEMO_POLICY,
        description="Replayed Mixtral first; GPT-4 when the heuristic scorer doubts the answer.",
        tiers=[(mixtral, 0.9), (gpt4, 1.0)],
        # Keep every demo answer, so a learned scorer can be trained from the replay labels.
        sample_rate=1.0,
    )
    credentials = DemoCredentials(
        username=ADMIN_USERNAME,
        password=_admin_password(saved.get("password")),
        api_key=_api_key(saved.get("api_key"), policy),
    )
    credentials_path().write_text(json.dumps(credentials.__dict__))
    credentials_path().chmod(0o600)
    return credentials


def _saved_credentials() -> dict[str, str]:
    path = credentials_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _endpoint(
    name: str, display: str, model_id: str, price_in: Decimal, price_out: Decimal, latency_ms: int
) -> ModelEndpoint:
    endpoint, _ = ModelEndpoint.objects.get_or_create(
        name=name,
        defaults={
            "display_name": display,
            "provider_kind": ProviderKind.REPLAY,
            "model_id": model_id,
            "input_price_per_m": price_in,
            "output_price_per_m": price_out,
            "options": {"latency_ms": latency_ms},
        },
    )
    return endpoint


def _admin_password(saved: str | None) -> str:
    user_model = get_user_model()
    user = user_model.objects.filter(username=ADMIN_USERNAME).first()
    if user is not None and saved and user.check_password(saved):
        return saved
    password = secrets.token_urlsafe(12)
    if user is None:
        user_model.objects.create_superuser(ADMIN_USERNAME, "admin@localhost", password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    return password


def _api_key(saved: str | None, policy: Policy) -> str:
    key = ApiKey.objects.filter(key_hash=hash_api_key(saved)).first() if saved else None
    if key is not None and key.is_active:
        return saved or ""
    _, plaintext = services.api_key_create(name="demo key", policy=policy, team="demo-team", app="demo-app")
    return plaintext
