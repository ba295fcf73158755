"""200 concurrent requests from several processes against a hard budget that affords 50.

A real gateway (two uvicorn worker processes) in front of a local upstream whose usage is
fixed, so a request's worst case equals its actual cost and the budget's arithmetic can
be checked exactly: the recorded spend never exceeds the limit, and no more than one
request's worst case of the limit is left unspent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import Budget
from routing.choices import RecordStatus
from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.net import free_port, wait_until_up
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records, subprocess_env

ROOT = Path(__file__).resolve().parents[3]
# 64 bytes: a reservation bounds the prompt at 64 + 4 (message overhead) tokens and the
# completion at max_tokens=6. The upstream answers with exactly that usage (a tokenizer
# spending a token a byte), so a request's worst case is its actual cost.
PROMPT = "Count the vowels in this sentence and answer with a number only."
PROMPT_TOKENS, COMPLETION_TOKENS = 64 + 4, 6
PRICE = Decimal("10")  # USD per 1M tokens, in and out
COST = WORST_CASE = (PROMPT_TOKENS + COMPLETION_TOKENS) * PRICE / 1_000_000
AFFORDABLE = 50
CLIENTS, PER_CLIENT = 4, 50

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_from_several_processes_never_overspend_a_hard_budget(budget_keys_cleared):
    assert len(PROMPT) == 64
    usage = UpstreamBehaviour(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)
    with running_upstream(usage) as upstream:
        # Not retried (the upstream never fails): a reservation is then one call's worst case.
        cheap = openai_endpoint(
            "race-cheap", upstream.base_url, "cheap", input_price_per_m=PRICE, output_price_per_m=PRICE, max_retries=0
        )
        # One tier: its cost alone is reserved and spent. (A free tier above it would not
        # stay above it: selection starts on the tier the goal ranks first, the free one.)
        _, key = make_key(make_policy("race", [(cheap, 1.0)], cache_ttl_s=0), team="racers")
        Budget.objects.create(name="racers", scope="team", scope_value="racers", limit=COST * AFFORDABLE)

        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(port), "--workers", "2",
             "--no-access-log", "--lifespan", "off", "--log-level", "warning"],
            cwd=ROOT, env=subprocess_env(),
        )  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{port}/v1/models")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            clients = [
                subprocess.Popen(
                    [sys.executable, "-m", "tests.billing.budgets.race_client", url, key, str(PER_CLIENT), PROMPT],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(CLIENTS)
            ]
            statuses: Counter[str] = Counter()
            for client in clients:
                out, _ = client.communicate(timeout=120)
                statuses.update(json.loads(out))
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)

    print(f"budget race: {dict(statuses)}; limit affords {AFFORDABLE} requests")
    assert sum(statuses.values()) == CLIENTS * PER_CLIENT
    assert set(statuses) <= {"200", "429"}, statuses
    flush_records()
    spent = sum(RequestRecord.objects.values_list("cost", flat=True), Decimal(0))
    # A 429 is on record too, as refused, at no cost.
    assert RequestRecord.objects.filter(status=RecordStatus.ANSWERED).count() == statuses["200"]
    assert RequestRecord.objects.filter(status=RecordStatus.REFUSED).count() == statuses["429"]
    assert spent <= COST * AFFORDABLE
    assert spent >= COST * AFFORDABLE - WORST_CASE, statuses
    print(f"budget race: recorded spend {spent} of limit {COST * AFFORDABLE}")
