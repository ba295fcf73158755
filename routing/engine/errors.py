"""Exceptions providers raise; the cascade turns each into a FAILED attempt."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider could not give an answer. `kind` is what the attempt records."""

    kind = "error"
    retryable = False


class ProviderTimeout(ProviderError):
    kind = "timeout"
    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection refused, 5xx, throttling: the provider may answer later."""

    kind = "unavailable"
    retryable = True


class ProviderRefused(ProviderError):
    """The model declined (content filter, guardrail)."""

    kind = "refused"


class ProviderBadRequest(ProviderError):
    """The provider rejected what we sent (context too long, bad parameter)."""

    kind = "bad_request"


class ProviderMisconfigured(ProviderError):
    """Missing credentials, unknown model id: an operator must fix the endpoint."""

    kind = "misconfigured"
