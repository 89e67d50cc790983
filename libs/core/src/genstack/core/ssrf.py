"""URLs a service fetches or calls on a client's behalf may not reach inside: URLs that
resolve to loopback, private, link-local or otherwise non-global addresses are refused unless
their network is allowed explicitly (the gateway's webhooks, ComfyUI's inputs by URL).

The caller checks right before it connects and then connects to the address that was checked
(no second lookup an attacker's DNS could answer differently), sending the original host name
as Host and TLS SNI (:meth:`Target.pinned_url`, :attr:`Target.host_header`)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_CHARS = 2048


class UnsafeUrlError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    url: str  # the URL as given
    parts: SplitResult
    host: str
    port: int
    address: IPAddress  # the checked address to connect to

    def pinned_url(self) -> str:
        """The URL with the host replaced by the checked address."""
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        path = self.parts.path or "/"
        query = f"?{self.parts.query}" if self.parts.query else ""
        return f"{self.parts.scheme}://{literal}:{self.port}{path}{query}"

    @property
    def host_header(self) -> str:
        default = 443 if self.parts.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class UrlPolicy:
    """``allow_variable`` names the setting that lets a network through, for the message."""

    def __init__(
        self,
        allow_networks: list[str] | None = None,
        *,
        allow_variable: str = "GATEWAY_WEBHOOK_ALLOW_NETWORKS",
    ) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allow_networks or []]
        self.allow_variable = allow_variable

    def address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def parse(self, url: str) -> tuple[SplitResult, str, int]:
        if len(url) > MAX_URL_CHARS:
            raise UnsafeUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrlError(f"not a valid URL: {exc}") from exc
        if parts.scheme not in {"http", "https"}:
            raise UnsafeUrlError("only http and https URLs are allowed")
        if parts.username is not None or parts.password is not None:
            raise UnsafeUrlError("URLs with credentials are not allowed")
        host = parts.hostname
        if not host:
            raise UnsafeUrlError("the URL has no host")
        return parts, host, port or (443 if parts.scheme == "https" else 80)

    async def check(self, url: str) -> Target:
        """Resolve and check ``url``; raises UnsafeUrlError saying why it is refused."""
        parts, host, port = self.parse(url)
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise UnsafeUrlError(f"{host} cannot be resolved: {exc}") from exc
            addresses = self._addresses(host, infos)
        return self._target(url, parts, host, port, addresses)

    def check_sync(self, url: str) -> Target:
        """:meth:`check` for a caller without an event loop (a job handler's thread)."""
        parts, host, port = self.parse(url)
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise UnsafeUrlError(f"{host} cannot be resolved: {exc}") from exc
            addresses = self._addresses(host, infos)
        return self._target(url, parts, host, port, addresses)

    def _target(
        self, url: str, parts: SplitResult, host: str, port: int, addresses: list[IPAddress]
    ) -> Target:
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise UnsafeUrlError(
                f"{host} resolves to {refused[0]}, a loopback, private, link-local or "
                f"reserved address (allow its network with {self.allow_variable})"
            )
        return Target(url=url, parts=parts, host=host, port=port, address=addresses[0])

    @staticmethod
    def _addresses(host: str, infos: Sequence[tuple[Any, ...]]) -> list[IPAddress]:
        found: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise UnsafeUrlError(f"{host} has no address")
        return found
