"""Exceptions providers raise; the cascade turns each into a FAILED attempt.

Two class attributes tell the cascade what to do with one: `retryable` errors are tried
again (with backoff) on the same endpoint, and `breaker_failure` ones count against the
endpoint's circuit breaker. A failure that is the caller's doing (a bad request, a
prompt the model declines) says nothing about the endpoint's health.

A provider that was billed for a failed call (a refusal after the model read the
prompt) passes the usage it reported, so the attempt is costed like an answer.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider could not give an answer. `kind` is what the attempt records."""

    kind = "error"
    retryable = False
    breaker_failure = True

    def __init__(
        self,
        message: str = "",
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_input_tokens = cached_input_tokens


class ProviderTimeout(ProviderError):
    kind = "timeout"
    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection refused, 5xx, throttling: the provider may answer later.

    `retry_after_s` is the provider's Retry-After, when it sent one.
    """

    kind = "unavailable"
    retryable = True

    def __init__(
        self,
        message: str = "",
        *,
        retry_after_s: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
    ) -> None:
        super().__init__(
            message, input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cached_input_tokens
        )
        self.retry_after_s = retry_after_s


class ProviderRefused(ProviderError):
    """The model declined (content filter, guardrail): the prompt's doing, not the endpoint's."""

    kind = "refused"
    breaker_failure = False


class ProviderBadRequest(ProviderError):
    """The provider rejected what we sent (context too long, bad parameter): the caller's fault."""

    kind = "bad_request"
    breaker_failure = False


class ProviderMisconfigured(ProviderError):
    """Missing credentials, unknown model id: an operator must fix the endpoint."""

    kind = "misconfigured"


class BreakerOpen(ProviderError):
    """Never raised by a provider: the kind of the attempt that an open breaker skipped."""

    kind = "breaker_open"
