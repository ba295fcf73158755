"""`POST /v1/feedback`: an app labels the answer one of its requests got.

Same shape as the chat-completions view: API-key authentication, OpenAI-format errors, a
native async view behind the lean `/v1/` handler. Body: `request_id` and exactly one of
`label` ("correct" | "incorrect") and `score` (0…1), optionally `comment`. A record not
stored yet is a 409 with `Retry-After`. See docs/quality.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from routing.api.openai.format import error_response
from routing.api.openai.parsing import parse_body
from routing.api.openai.views import authenticate, read_body
from routing.choices import LabelSource
from routing.exceptions import ApiError, InternalError, MethodNotAllowed, RequestInvalid
from routing.models import QualityLabel
from routing.quality.labels import RecordNotOwned, RecordNotStoredYet, feedback_record

LABELS = {"correct": 1.0, "incorrect": 0.0}
MAX_COMMENT_CHARS = 2_000
COMPLETION_ID_PREFIX = "chatcmpl-"
RETRY_AFTER_S = 2

logger = logging.getLogger(__name__)


class RequestNotFound(ApiError):
    status = 404
    code = "request_not_found"


class RequestNotRecordedYet(ApiError):
    """The record may still be on its way to the database: try again shortly."""

    status = 409
    code = "request_not_recorded_yet"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


@csrf_exempt
async def feedback(request: HttpRequest) -> HttpResponse:
    """POST /v1/feedback: store (or replace) the app's label for one of its requests."""
    try:
        if request.method != "POST":
            raise MethodNotAllowed("Use POST for /v1/feedback.")
        key = await authenticate(request)
        fields = parse_feedback(parse_body(read_body(request)))
        label, created = await sync_to_async(_record)(key, fields)
        return JsonResponse(label_object(label), status=201 if created else 200)
    except ApiError as exc:
        return error_response(exc)
    except Exception:
        logger.exception("Unhandled error in feedback")
        return error_response(InternalError("The gateway failed to store this label; it has been logged."))


def _record(key: Any, fields: dict[str, Any]) -> tuple[QualityLabel, bool]:
    request_id = fields["request_id"]
    try:
        return feedback_record(key=key, **fields)
    except RecordNotOwned as exc:
        raise RequestNotFound(f"No request {request_id} was made with this team's keys.", param="request_id") from exc
    except RecordNotStoredYet as exc:
        raise RequestNotRecordedYet(
            f"Request {request_id} is not recorded yet: records reach the database within seconds of the "
            f"answer. Retry after {RETRY_AFTER_S} seconds; if it persists, check the id.",
            param="request_id",
        ) from exc


def parse_feedback(data: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `feedback_record`; `RequestInvalid` names the bad field."""
    return {
        "request_id": _request_id(data.get("request_id")),
        "value": _value(data),
        "comment": _comment(data.get("comment")),
        "source": _source(data.get("source")),
    }


def _request_id(value: Any) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value.removeprefix(COMPLETION_ID_PREFIX))
        except ValueError:
            pass
    raise RequestInvalid(
        "'request_id' must be the request id from the answer's x-request-id header (or its chatcmpl- id).",
        param="request_id",
    )


def _value(data: dict[str, Any]) -> float:
    label, score = data.get("label"), data.get("score")
    if (label is None) == (score is None):
        raise RequestInvalid("Send exactly one of 'label' (correct or incorrect) and 'score' (0 to 1).", param="label")
    if label is not None:
        if not isinstance(label, str) or label not in LABELS:
            raise RequestInvalid(f"'label' must be 'correct' or 'incorrect'; got {label!r}.", param="label")
        return LABELS[label]
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise RequestInvalid(f"'score' must be a number from 0 to 1; got {score!r}.", param="score")
    return float(score)


def _comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_COMMENT_CHARS:
        raise RequestInvalid(f"'comment' must be a string of at most {MAX_COMMENT_CHARS} characters.", param="comment")
    return value


def _source(value: Any) -> str:
    if value in (None, LabelSource.FEEDBACK):
        return LabelSource.FEEDBACK
    raise RequestInvalid(
        "'source' may only be 'feedback': shadow and replay labels are written by the gateway itself.",
        param="source",
    )


def label_object(label: QualityLabel) -> dict[str, Any]:
    return {
        "object": "feedback",
        "request_id": str(label.record_id),
        "source": label.source,
        "score": label.value,
        "comment": label.comment,
        "created": int(label.created.timestamp()),
        "updated": int(label.updated.timestamp()),
    }
