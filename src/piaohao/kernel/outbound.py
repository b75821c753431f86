"""Outbound HTTP to addresses strangers choose (merchant `notify_url`, `return_url`, pull-mode URLs).

`PIAOHAO_OUTBOUND_PRIVATE=deny` (the default outside the embedded default) keeps the platform from
being used to reach its own network (SSRF):

- `check_url` at creation: only absolute `http(s)` URLs without credentials, whose host is not an
  address literal of a non-public range (loopback in every spelling: `127.1`, `2130706433`,
  `0x7f.1`, `[::1]`, `[::ffff:127.0.0.1]`; private, link-local, shared, reserved, multicast) and
  not a name that is local by definition (`localhost`, `*.localhost`, `*.local`, `*.internal`,
  a single label). Refused with `InvalidUrl` (`400 INVALID_URL`).
- `GuardedTransport` at delivery: the host is resolved once, every address it resolves to must be
  public (else `OutboundRefused`), and the connection is made to the address that was checked
  (TLS still verifies the name), so a name that resolves to a public address when checked and to
  a private one a moment later (DNS rebinding) gets nowhere.

With `allow` (the embedded default: everything runs on one machine) both checks only require an
absolute http(s) URL. `guarded_client` builds the one outbound client every caller uses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import httpx

from piaohao.kernel.errors import InvalidUrl

__all__ = ["OutboundRefused", "GuardedTransport", "check_url", "check_urls", "guarded_client", "is_public_ip",
           "literal_ip"]

URL_CHARS_MAX = 1024
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")

Resolver = Callable[[str, int], list[str]]


class OutboundRefused(Exception):
    """A delivery to a non-public address (after name resolution) was refused, nothing was sent."""


def is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                return is_public_ip(embedded)
    return ip.is_global and not ip.is_multicast


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any spelling a resolver accepts (`127.1`,
    `2130706433`, `0x7f000001`, `017700000001`), or None for a name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _local_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or "." not in name or name.endswith(_LOCAL_SUFFIXES)


def check_url(raw: str | None, *, allow_private: bool, field: str = "url") -> str | None:
    """`raw` if it may be called later, else `InvalidUrl`. None passes (no URL given)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > URL_CHARS_MAX or any(ord(c) < 0x21 or ord(c) == 0x7f for c in raw):
        raise InvalidUrl(f"{field} must be an absolute http(s) URL of at most {URL_CHARS_MAX} characters")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidUrl(f"{field} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidUrl(f"{field} must be an absolute http(s) URL")
    if url.userinfo:
        raise InvalidUrl(f"{field} must not carry credentials")
    if allow_private:
        return raw
    ip = literal_ip(url.host)
    if (ip is not None and not is_public_ip(ip)) or (ip is None and _local_name(url.host)):
        raise InvalidUrl(f"{field} must point to a public address (PIAOHAO_OUTBOUND_PRIVATE=deny)")
    return raw


def check_urls(*, allow_private: bool, **urls: str | None) -> None:
    """`check_url` on each named URL (`notify_url=..., return_url=...`)."""
    for name, raw in urls.items():
        check_url(raw, allow_private=allow_private, field=name)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport that connects only to public addresses, and to the address it checked."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver, **kwargs):
        super().__init__(**kwargs)
        self.allow_private = allow_private
        self.resolver = resolver

    def pinned_address(self, host: str, port: int) -> str:
        """The public address to connect to for `host`, or OutboundRefused."""
        ip = literal_ip(host)
        if ip is not None:
            addresses = [ip]
        else:
            if _local_name(host):
                raise OutboundRefused(f"{host} is a local name")
            try:
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host, port)]
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise httpx.ConnectError(f"cannot resolve {host}")
        private = [str(a) for a in addresses if not is_public_ip(a)]
        if private:
            raise OutboundRefused(f"{host} resolves to a non-public address ({', '.join(private[:3])})")
        return str(addresses[0])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.allow_private:
            host = request.url.host
            address = self.pinned_address(host, request.url.port or (443 if request.url.scheme == "https" else 80))
            if address != host:
                # The Host header was set from the name when the request was built; TLS checks the name.
                request.url = request.url.copy_with(host=address)
                if request.url.scheme == "https":
                    request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)


def guarded_client(*, allow_private: bool, timeout_s: float, resolver: Resolver = system_resolver,
                   max_connections: int = 20, headers: dict | None = None) -> httpx.Client:
    """The outbound client: no redirects, no proxy from the environment, guarded addresses."""
    transport = GuardedTransport(allow_private=allow_private, resolver=resolver,
                                 limits=httpx.Limits(max_connections=max_connections,
                                                     max_keepalive_connections=max_connections // 2 or 1))
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                        trust_env=False, headers=headers or {})
