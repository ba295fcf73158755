"""The prompt and answers a policy keeps for the request log: redacted on the hot path, purged later.

Off by default (`Policy.store_text`). The text is redacted before it is made durable, so an
unredacted prompt never reaches the record buffer or the database; the flusher stores it in
`RequestText` and `request_texts_purge` deletes it once the policy's retention has passed.
See docs/request-log.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db.models import Q

from routing.config.snapshots import config_cache
from routing.engine.types import CascadeResult, ChatRequest, Outcome
from routing.models import MAX_SAMPLE_CHARS, Policy, RequestText
from routing.records.payload import TextPayload

REDACTED = "[redacted]"


def redact(text: str, patterns: Sequence[re.Pattern[str]]) -> str:
    """The text with every match of every pattern replaced, capped at the sample size."""
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text[:MAX_SAMPLE_CHARS]


def text_payload(*, policy_id: int, chat: ChatRequest, result: CascadeResult) -> TextPayload | None:
    """The redacted prompt and each attempt's answer, for a policy that keeps text; else None."""
    quality = config_cache.quality.get(policy_id)
    if quality is None or quality.keep_text is None:
        return None
    patterns = quality.keep_text
    return {
        "prompt": redact(_conversation(chat), patterns),
        "answers": [
            {"position": position, "text": redact(_answer_of(result, position), patterns)}
            for position, attempt in enumerate(result.attempts)
            if attempt.answer or attempt.outcome is Outcome.ACCEPTED
        ],
    }


def _conversation(chat: ChatRequest) -> str:
    """One message, as it was; several, each after its role, so the log shows who said what."""
    if len(chat.messages) == 1:
        return chat.messages[0].content
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in chat.messages)


def _answer_of(result: CascadeResult, position: int) -> str:
    attempt = result.attempts[position]
    # A live-streamed answer is only whole in the completion.
    if not attempt.answer and attempt.outcome is Outcome.ACCEPTED and result.completion is not None:
        return result.completion.text
    return attempt.answer


def request_texts_purge(*, now: datetime, default_retention_days: int) -> int:
    """Delete kept texts older than their policy's retention; a deleted policy's use the default.

    One range delete per policy, on the (policy, created) index.
    """
    deleted = 0
    known: list[int] = []
    for policy_id, days in Policy.objects.values_list("id", "text_retention_days"):
        known.append(policy_id)
        deleted += _delete(Q(policy_ref=policy_id), now - timedelta(days=days))
    orphans = Q(policy_ref__isnull=True) | ~Q(policy_ref__in=known)
    deleted += _delete(orphans, now - timedelta(days=default_retention_days))
    return deleted


def _delete(scope: Q, before: datetime) -> int:
    count, _ = RequestText.objects.filter(scope, created__lt=before).delete()
    return count
