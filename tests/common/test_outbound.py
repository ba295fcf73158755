"""The outbound URL policy: where endpoints and alert webhooks may point (common/outbound.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError

from common import outbound
from common.outbound import OutboundRefused, outbound_check, validate_outbound_url


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make `host` resolve to `addresses` (the policy's one DNS seam); other names resolve to nothing."""
    table: dict[str, list[str]] = {}

    def resolve(host: str) -> list[outbound.IPAddress]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            return []

    monkeypatch.setattr(outbound, "resolve", resolve)

    def answer(host: str, *addresses: str) -> None:
        table[host] = list(addresses)

    return answer


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://169.254.10.1/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_it_refuses_metadata_and_link_local_addresses(url: str, dns: Callable[..., None]) -> None:
    with pytest.raises(OutboundRefused):
        outbound_check(url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/", "http:///v1"]
)
def test_it_refuses_other_schemes_and_urls_without_a_host(url: str, dns: Callable[..., None]) -> None:
    with pytest.raises(OutboundRefused):
        outbound_check(url)


def test_it_checks_every_address_a_name_resolves_to(dns: Callable[..., None]) -> None:
    dns("rebind.example.com", "203.0.113.7", "169.254.169.254")

    with pytest.raises(OutboundRefused, match="metadata"):
        outbound_check("https://rebind.example.com/hook")


def test_private_and_loopback_addresses_pass_by_default(dns: Callable[..., None]) -> None:
    dns("vllm", "10.0.0.5")

    outbound_check("http://vllm:8000/v1")
    outbound_check("http://127.0.0.1:11434/v1")


def test_deny_private_refuses_rfc1918_and_loopback(settings, dns: Callable[..., None]) -> None:
    settings.CASCADEOPS_OUTBOUND_DENY_PRIVATE = True
    dns("vllm", "10.0.0.5")
    dns("api.example.com", "203.0.113.7")

    for url in ("http://vllm:8000/v1", "http://127.0.0.1:11434/v1", "http://[::1]/", "http://192.168.1.2/"):
        with pytest.raises(OutboundRefused, match="private or loopback"):
            outbound_check(url)
    outbound_check("https://api.example.com/v1")


def test_the_allow_list_is_the_only_thing_allowed_when_set(settings, dns: Callable[..., None]) -> None:
    settings.CASCADEOPS_OUTBOUND_ALLOW = ["api.openai.com", "10.1.0.0/16"]
    dns("api.openai.com", "203.0.113.10")
    dns("vllm", "10.1.2.3")
    dns("other.example.com", "203.0.113.11")

    outbound_check("https://api.openai.com/v1")
    outbound_check("http://vllm:8000/v1")
    for url in ("https://other.example.com/v1", "http://10.2.0.1/v1", "https://unresolvable.example/v1"):
        with pytest.raises(OutboundRefused, match="CASCADEOPS_OUTBOUND_ALLOW"):
            outbound_check(url)


def test_an_allowed_cidr_lets_an_address_through_that_is_refused_by_default(settings, dns) -> None:
    settings.CASCADEOPS_OUTBOUND_ALLOW = ["169.254.0.0/16"]

    outbound_check("http://169.254.1.1/")


def test_the_validator_says_why_for_admin_and_rest() -> None:
    with pytest.raises(ValidationError, match=r"does not send requests to this URL.*metadata"):
        validate_outbound_url("http://169.254.169.254/")
    validate_outbound_url("")  # blank: nothing to call


def test_a_real_lookup_of_an_ip_literal_needs_no_dns() -> None:
    assert outbound.resolve("127.0.0.1") == [ipaddress.ip_address("127.0.0.1")]
