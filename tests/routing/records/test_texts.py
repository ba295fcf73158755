"""Kept prompts and answers: off by default, redacted before they are made durable, set per policy."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest

from routing.config.snapshots import config_cache, load_quality
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Message, Outcome
from routing.models import Policy, RequestText
from routing.records.texts import REDACTED, redact, text_payload
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

CARD = re.compile(r"\b\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def result_of(*answers: tuple[Outcome, str]) -> CascadeResult:
    attempts = tuple(Attempt(i, 1, f"m{i}", outcome, answer=text) for i, (outcome, text) in enumerate(answers))
    return CascadeResult(task="faq", attempts=attempts, completion=Completion(answers[-1][1], "stop", 1, 1, 1.0))


def test_every_pattern_is_redacted():
    text = "card 4111 1111 1111 1111, mail ann@example.com, order 12"

    assert redact(text, [CARD, EMAIL]) == f"card {REDACTED}, mail {REDACTED}, order 12"


def test_a_policy_keeps_no_text_by_default(db):
    cheap, strong = replay_endpoints()
    policy = make_policy("quiet", [(cheap, 0.9), (strong, 1.0)])
    config_cache.quality = load_quality({})
    chat = ChatRequest(messages=(Message("user", "hello"),))

    assert text_payload(policy_id=policy.id, chat=chat, result=result_of((Outcome.ACCEPTED, "hi"))) is None


def test_a_policy_that_keeps_text_gets_the_prompt_and_each_answer_redacted(db):
    cheap, strong = replay_endpoints()
    policy = make_policy("kept", [(cheap, 0.9), (strong, 1.0)], store_text=True, text_redact_patterns=EMAIL.pattern)
    config_cache.quality = load_quality({})
    chat = ChatRequest(messages=(Message("system", "Be brief."), Message("user", "I am ann@example.com")))
    result = result_of((Outcome.ESCALATED, "Hello ann@example.com"), (Outcome.FAILED, ""), (Outcome.ACCEPTED, "Hi"))

    kept = text_payload(policy_id=policy.id, chat=chat, result=result)

    assert kept == {
        "prompt": f"[system]\nBe brief.\n\n[user]\nI am {REDACTED}",
        "answers": [{"position": 0, "text": f"Hello {REDACTED}"}, {"position": 2, "text": "Hi"}],
    }


def test_the_api_sets_text_keeping_and_refuses_a_broken_pattern(api, db):
    cheap, strong = replay_endpoints()
    policy = make_policy("api-kept", [(cheap, 0.9), (strong, 1.0)])
    url = f"/api/routing/policies/{policy.id}/"

    bad = api.patch(url, {"store_text": True, "text_redact_patterns": "ok\n(unclosed"}, format="json")
    good = api.patch(url, {"store_text": True, "text_retention_days": 7, "text_redact_patterns": r"\d+"}, format="json")

    assert bad.status_code == 400 and "text_redact_patterns" in bad.json()
    assert good.status_code == 200
    assert Policy.objects.filter(id=policy.id, store_text=True, text_retention_days=7).exists()


@pytest.mark.live
def test_through_the_api_the_text_is_redacted_before_it_is_made_durable(live_gateway, settings):
    cheap, strong = replay_endpoints()
    policy = make_policy(
        "kept-live", [(cheap, 0.9), (strong, 1.0)], store_text=True, text_redact_patterns=EMAIL.pattern
    )
    _, plaintext = make_key(policy)
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=plaintext, max_retries=0)

    raw = client.chat.completions.with_raw_response.create(
        model="kept-live", messages=[{"role": "user", "content": "Write to ann@example.com please"}]
    )
    spooled = _spooled_text(settings)
    flush_records()

    kept = RequestText.objects.get(record_id=raw.headers["x-request-id"])
    assert kept.prompt == f"Write to {REDACTED} please"
    assert [a["position"] for a in kept.answers] == list(range(int(raw.headers["x-cascadeops-attempts"])))
    if not settings.REDIS_URL:  # embedded: the record waited in the spool, already redacted
        assert REDACTED in spooled and "ann@example.com" not in spooled


def _spooled_text(settings: object) -> str:
    """Everything in the record spool (embedded mode) before the flusher reads it."""
    spool = Path(settings.CASCADEOPS_RECORD_SPOOL_DIR)  # type: ignore[attr-defined]
    return "".join(p.read_text(errors="replace") for p in spool.rglob("*") if p.is_file())
