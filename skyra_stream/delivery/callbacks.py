"""Which callback URLs may be called, decided before any connection, and a connection to
exactly the address that was checked.

A callback URL is chosen by whoever submitted the job, so it could point the worker at the
cloud metadata endpoint, at a database on the pod network, or at a name that resolves to
either. The rules, in order:

- `https` only; plain `http` only for hosts listed for development (`SKYRA_WEBHOOK_HTTP_HOSTS`);
  no user info in the URL;
- the host must be on the tenant's allowlist (an exact name, or `*.example.com` for its
  subdomains);
- every address the name resolves to must be public: not loopback, private, link-local
  (169.254.0.0/16 holds the metadata services), multicast, reserved, unspecified, shared
  (100.64.0.0/10) or the IPv6 equivalents, unless a network is explicitly allowed
  (`SKYRA_WEBHOOK_ALLOWED_NETWORKS`, for tests and private receivers);
- the connection goes to the address that was checked (no second resolution that a DNS
  answer with a short TTL could change in between): `PinnedTarget` carries it, and the
  sender connects to that IP, sending the name only as Host and TLS SNI (the certificate is
  still verified against the name).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# What no callback may reach unless allowed: beyond `is_global`, named for the reader.
METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))


class CallbackRefused(ValueError):
    """The callback may not be called; the message says which rule refused it."""


class CallbackUnreachable(OSError):
    """The name does not resolve now: worth another attempt later."""


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A checked callback: where to connect (the IP), and what to call it (the name)."""

    scheme: str
    host: str
    ip: str
    port: int
    path: str  # with the query


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def host_allowed(host: str, allowlist: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for raw in allowlist:
        entry = raw.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


def address_refused(ip: IPAddress, allowed: Sequence[Network]) -> str | None:
    """Why `ip` may not be called, or None when it may."""
    if any(ip in net for net in allowed):
        return None
    if any(ip in net for net in METADATA):
        return "a cloud metadata address"
    for flag in (
        "is_unspecified",
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
    ):
        if getattr(ip, flag):
            return f"{flag.removeprefix('is_').replace('_', '-')} address"
    if not ip.is_global:
        return "not a public address"
    return None


def precheck_callback(
    url: str,
    allowlist: Sequence[str] | None,
    *,
    allowed_networks: Sequence[Network] = (),
    http_hosts: Sequence[str] = (),
) -> None:
    """The rules that need no name resolution, for the API to refuse a job whose callback
    can never be delivered (a 422 at submission, not a refusal at delivery): the scheme,
    credentials, the tenant's allowlist, and a literal address in a refused range. A name is
    resolved and checked at each delivery (`check_callback`), never here: what it resolves
    to at submission says nothing about delivery time. `allowlist` None: this process does not
    hold the tenants' allowlists (the webhook sender does), so that rule waits for delivery."""
    if allowlist is None:
        try:
            allowlist = [urlsplit(url).hostname or ""]
        except ValueError as exc:
            raise CallbackRefused(f"not a URL: {exc}") from None
    check_callback(
        url,
        allowlist,
        allowed_networks=allowed_networks,
        http_hosts=http_hosts,
        resolver=_not_resolved,
    )


def _not_resolved(_host: str, _port: int) -> list[str]:
    raise _NameNotResolved


class _NameNotResolved(Exception):
    pass


def check_callback(
    url: str,
    allowlist: Sequence[str],
    *,
    allowed_networks: Sequence[Network] = (),
    http_hosts: Sequence[str] = (),
    resolver: Resolver = system_resolver,
) -> PinnedTarget:
    """The address to call for `url`, or CallbackRefused; nothing is connected to here."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http"):
        raise CallbackRefused(f"scheme {parts.scheme!r}: only https")
    if not host:
        raise CallbackRefused("no host")
    if parts.scheme == "http" and not host_allowed(host, http_hosts):
        raise CallbackRefused(f"plain http to {host}: only https (http is for development hosts)")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("credentials in the URL")
    if not host_allowed(host, allowlist):
        raise CallbackRefused(f"host {host} is not on the tenant's allowlist")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    try:
        addresses = [str(literal)] if literal is not None else resolver(host, port)
    except OSError as exc:
        raise CallbackUnreachable(f"{host} does not resolve: {exc}") from None
    except _NameNotResolved:
        return PinnedTarget(parts.scheme, host, "", port, parts.path or "/")
    if not addresses:
        raise CallbackRefused(f"{host} resolves to nothing")
    for address in addresses:  # every one: a round-robin answer may rotate to any
        why = address_refused(ipaddress.ip_address(address.split("%")[0]), allowed_networks)
        if why is not None:
            raise CallbackRefused(f"{host} resolves to {address}, {why}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return PinnedTarget(parts.scheme, host, addresses[0], port, path)
