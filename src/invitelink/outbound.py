"""HTTP requests to URLs that users chose (webhook endpoints, supplier postbacks): public addresses only.

Such a URL is a way into the service's own network (server-side request forgery): ``http://127.0.0.1:5432/``,
``http://169.254.169.254/`` (cloud metadata), ``http://10.0.0.7/admin``, or a name that resolves to one of them. So
a URL is checked when it is registered, and again whenever a connection to it is opened: its host is resolved,
every address it resolves to must be public, and the connection goes to one of exactly the addresses checked. A
name whose DNS answer changes between the check and the connection (DNS rebinding) therefore cannot lead inside.
``INVITELINK_WEBHOOK_ALLOW_PRIVATE`` lifts the address rule (development and tests), never the scheme rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from invitelink.services.errors import InvalidInput

SCHEMES = ("http", "https")
# How long a name may take to resolve, at registration and before each new connection.
RESOLVE_TIMEOUT_SECONDS = 5.0
# A name with many addresses is tried on this many (all of them are checked first).
MAX_ADDRESSES_TRIED = 3
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class TargetRefused(InvalidInput):
    """A URL the service does not send to; the message says why, and names no more than the host and address."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="url")


def parse_url(url: str) -> httpx.URL:
    """``url`` as httpx reads it, if it is an absolute http(s) URL with a host; TargetRefused otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise TargetRefused(f"url is not a valid URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        raise TargetRefused("url must start with http:// or https://")
    if not parsed.host:
        raise TargetRefused("url has no host")
    return parsed


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo client, NAT64), which is where it leads."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    for reason, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    # Shared address space (100.64.0.0/10), benchmarking and documentation ranges: none of the above, not public.
    if not address.is_global:
        return "not public"
    return None


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """TargetRefused unless every address is public: one inside address is enough to reach inside."""
    for text in addresses:
        address = _address(text)
        reason = refusal(address)
        if reason is not None:
            shown = f"{host} is" if literal(host) == address else f"{host} resolves to {address}, which is"
            raise TargetRefused(f"url: {shown} {reason}; only public addresses receive webhooks")


def _address(text: str) -> IPAddress:
    # An IPv6 scope (fe80::1%eth0) is not part of the address.
    return ipaddress.ip_address(text.split("%", 1)[0])


def literal(host: str) -> IPAddress | None:
    """The address a URL's host writes, or None for a name."""
    try:
        return _address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (an address itself resolves to itself), resolved in a worker thread so the event
    loop never waits on DNS; TargetRefused when it does not resolve in time."""
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT_SECONDS):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise TargetRefused(f"url: {host} did not resolve within {RESOLVE_TIMEOUT_SECONDS:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"url: {host} does not resolve") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"url: {host} does not resolve")
    return addresses


def check_url_now(url: str, *, allow_private: bool) -> str:
    """``check_url`` without resolving: http(s), and an address written in the URL must be public. For code inside a
    transaction, which must not wait on DNS; the send-time check resolves the name."""
    url = url.strip()
    parsed = parse_url(url)
    if not allow_private and literal(parsed.host) is not None:
        check_addresses(parsed.host, [parsed.host])
    return url


async def check_url(url: str, *, allow_private: bool) -> str:
    """``url``, stripped, if the service may send to it: http(s), and (unless ``allow_private``) a host whose every
    address is public. TargetRefused (a 400 in the admin API) otherwise."""
    url = check_url_now(url, allow_private=allow_private)
    if not allow_private:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        check_addresses(parsed.host, await resolve(parsed.host, port))
    return url


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the check at the one place every connection is opened: resolve, check every
    address, connect to a checked address (TLS still verifies the certificate against the URL's host name)."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private:
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await resolve(host, port)
        check_addresses(host, addresses)
        error: Exception | None = None
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("url: unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections are opened by ``GuardedBackend``.

    httpx has no parameter for the network backend, its connection pool has: the pool is built again, with the same
    limits, around the guard. ``tests/test_webhooks.py`` sends to a loopback receiver with the guard on and expects
    a refusal, so a change of httpx that bypassed it would fail there."""

    def __init__(self, *, allow_private: bool, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def client(*, allow_private: bool, timeout: float, connections: int) -> httpx.AsyncClient:
    """An HTTP client for user-chosen URLs: the guard on every connection, no redirects followed (a redirect could
    lead anywhere, and an endpoint that moved should be updated), no proxy or credentials from the environment."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, limits=limits),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
