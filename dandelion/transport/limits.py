"""Per-connection and per-address limits of the worker endpoint.

A worker's address is used for one thing: counting its open connections, in memory, so one
machine cannot hold all the coordinator's sockets. It is never logged or stored. Behind a
reverse proxy every connection comes from the proxy; the ``trusted_proxies`` setting names the
proxies whose ``X-Forwarded-For`` (its last entry: the address the proxy itself saw) is believed.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from aiohttp import web

__all__ = ["AddressLimit", "Network", "TokenBucket", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` → networks. Raises ValueError naming a bad entry."""
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {part!r} is not an address or network") from None
    return tuple(out)


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The worker's address: the peer's, or what a trusted proxy forwarded."""
    peer = request.remote or ""
    if not trusted or not peer:
        return peer
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not any(ip in net for net in trusted):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    last = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last)) if last else peer
    except ValueError:
        return peer


class AddressLimit:
    """Open connections per address, at most ``limit`` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        if self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def __len__(self) -> int:
        return len(self._open)


class TokenBucket:
    """``rate`` messages per second on average, ``burst`` at once."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
