"""Errors the routing API answers with, each mapped to OpenAI's error format in one place."""

from __future__ import annotations

import math
from typing import Any


class ApiError(Exception):
    """An error the caller sees as `{"error": {message, type, param, code}}`."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def as_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}


class RequestInvalid(ApiError):
    code = "invalid_request"


class ParameterUnsupported(RequestInvalid):
    """A request parameter this gateway (or this policy) does not take: refused, never dropped."""

    code = "unsupported_parameter"


class RequestTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class KeyInvalid(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PolicyNotFound(ApiError):
    status = 404
    code = "model_not_found"


class TiersFailed(ApiError):
    """Every tier of the cascade failed; says why for each one."""

    status = 502
    type = "upstream_error"
    code = "all_tiers_failed"

    def __init__(self, message: str, *, request_id: str, all_timeouts: bool) -> None:
        super().__init__(message)
        self.request_id = request_id
        if all_timeouts:
            self.status = 504
            self.code = "all_tiers_timed_out"

    def headers(self) -> dict[str, str]:
        return {"x-request-id": self.request_id, "x-cascadeops-request-id": self.request_id}


class InternalError(ApiError):
    status = 500
    type = "server_error"
    code = "internal_error"


class BudgetExceeded(ApiError):
    """A blocking budget cannot cover the request; says which, its limit, its spend and the reset."""

    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(self.retry_after_s, 1))}


class BudgetRequestTooLarge(BudgetExceeded):
    """A blocking budget has room left, but not for this request's worst case.

    Retrying the same request cannot help, so there is no `Retry-After`; the message
    says what the worst case was, what is left and the `max_tokens` that would fit.
    """

    code = "budget_request_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=0)

    def headers(self) -> dict[str, str]:
        return {}


class BudgetUnavailable(ApiError):
    """The budget store cannot be reached: a request under a budget is refused, not let through."""

    status = 503
    type = "server_error"
    code = "budget_store_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RateLimited(ApiError):
    """The API key's requests or tokens per minute are used up; says when to retry.

    `type` is "requests" or "tokens", as OpenAI sends it; the `x-ratelimit-*` headers
    come along, and `Retry-After` in whole seconds, at least one.
    """

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str, retry_after_s: float, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.type = limit_type
        self.retry_after_s = retry_after_s
        self.limit_headers = headers

    def headers(self) -> dict[str, str]:
        return {**self.limit_headers, "Retry-After": str(max(math.ceil(self.retry_after_s), 1))}
