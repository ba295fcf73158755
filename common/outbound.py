"""Where CascadeOps may send HTTP requests that an operator's configuration points at.

Model endpoints' `base_url` and alert webhooks are URLs an operator types in; the gateway
then calls them from inside the deployment's network, and shows what came back. Without a
policy that is a server-side request forgery: `http://169.254.169.254/…` reads the cloud's
instance credentials. The one policy for every such URL lives here:

- only `http` and `https`;
- never a cloud metadata service (by name or address), nor a link-local address;
- with `CASCADEOPS_OUTBOUND_DENY_PRIVATE`, no RFC 1918, loopback or unique-local address
  either (off by default: a local vLLM or Ollama on a private address is normal);
- with `CASCADEOPS_OUTBOUND_ALLOW` (host names and CIDRs), only those (strict mode).

The host is resolved and every address it has is checked. A name that does not resolve
passes (there is nothing to check and nothing to reach) unless strict mode is on. Webhooks
are checked again when sent, since DNS answers may change after the save.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "0.0.0.0/8",
        "::1/128",
        "::/128",
        "fc00::/7",
    )
)


class OutboundRefused(ValueError):
    """The URL is one this deployment does not send requests to; the message says why."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The deployment's rules: an allow-list (empty: any host but the refused ones), and private ranges."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    deny_private: bool = False

    @property
    def strict(self) -> bool:
        return bool(self.allow_hosts or self.allow_networks)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow_networks)


def outbound_policy() -> OutboundPolicy:
    """The policy the settings give (read on every check: saves and webhook sends are rare)."""
    hosts, networks = set(), []
    for entry in settings.CASCADEOPS_OUTBOUND_ALLOW:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return OutboundPolicy(frozenset(hosts), tuple(networks), settings.CASCADEOPS_OUTBOUND_DENY_PRIVATE)


def resolve(host: str) -> list[IPAddress]:
    """Every address `host` has (an IP literal is its own); empty when it does not resolve.

    The one seam tests replace, so they need no DNS.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def outbound_check(url: str, policy: OutboundPolicy | None = None) -> None:
    """Raise `OutboundRefused` unless the policy lets CascadeOps send a request to `url`."""
    policy = policy or outbound_policy()
    host = _host(url)
    if host in METADATA_HOSTS:
        raise OutboundRefused(f"{host} is a cloud metadata service.")
    addresses = _addresses(host)
    named = host in policy.allow_hosts
    if policy.strict and not named and not (addresses and all(policy.allows_address(a) for a in addresses)):
        raise OutboundRefused(f"{host} is not in CASCADEOPS_OUTBOUND_ALLOW.")
    for address in addresses:
        if not policy.allows_address(address):
            _check_address(host, address, policy)


def validate_outbound_url(url: str) -> None:
    """`outbound_check` as a Django validator, for model `clean()` methods and serializers."""
    if not url:
        return
    try:
        outbound_check(url)
    except OutboundRefused as exc:
        raise ValidationError(f"CascadeOps does not send requests to this URL: {exc}", code="outbound") from exc


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL ({exc}).") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise OutboundRefused("only http and https URLs are allowed.")
    if not host:
        raise OutboundRefused("the URL has no host.")
    return host.lower().rstrip(".")


def _addresses(host: str) -> list[IPAddress]:
    addresses = resolve(host)
    # ::ffff:169.254.169.254 reaches the IPv4 address: judge it as that.
    return [a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped else a for a in addresses]


def _check_address(host: str, address: IPAddress, policy: OutboundPolicy) -> None:
    if address in METADATA_ADDRESSES:
        raise OutboundRefused(f"{host} is a cloud metadata address ({address}).")
    if _within(address, LINK_LOCAL):
        raise OutboundRefused(f"{host} is a link-local address ({address}).")
    if policy.deny_private and _within(address, PRIVATE):
        raise OutboundRefused(
            f"{host} is a private or loopback address ({address}); see CASCADEOPS_OUTBOUND_DENY_PRIVATE."
        )


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)  # False across IPv4 and IPv6
