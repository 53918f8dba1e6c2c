"""Find the caller's IP address; believe forwarding headers only from configured proxies.

By default the answer is the socket peer (``scope["client"][0]``) and no header is read at all, so
a client cannot choose its own rate-limit key. When the peer is one of the ``trusted_proxies``
(IP addresses or CIDR networks), ``X-Forwarded-For`` or RFC 7239 ``Forwarded`` is read and walked
**right to left**: each hop a trusted proxy appended is skipped until the first address that is not
a trusted proxy, which is the client. Anything malformed at the point where it matters falls back to
the socket peer, never to a value the client wrote:

* an entry that is not an IP address (``X-Forwarded-For: evil``);
* a ``Forwarded`` header that does not parse (unbalanced quotes, a pair without ``=``);
* an obfuscated or ``unknown`` node (``for=_hidden``, ``for=unknown``) or an element without
  ``for=`` in the position of the client: the proxy chose not to tell us the address, and using the
  token would put every such client into one bucket or let a client pick its key.

``header="auto"`` (the default) reads whichever of the two headers is present. When both are
present they must name the same client, or neither is believed: a proxy that appends
``X-Forwarded-For`` usually passes a client's own ``Forwarded`` through untouched, and trusting that
one would let the client choose its address. Pin ``header`` to the one your proxy writes to avoid
the question.

Addresses are normalised (``ipaddress`` text form; IPv4-mapped IPv6 ``::ffff:1.2.3.4`` becomes
``1.2.3.4``; zone ids are dropped). :meth:`ClientIPResolver.key` additionally groups IPv6 clients by
network (``/64`` by default): one subscriber usually holds a whole ``/64``, so per-address limits
would be trivially bypassed by rotating addresses. ``resolve`` always returns the exact address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import Scope

from fastapi_authgate.errors import ConfigurationError

__all__ = ["ClientIPResolver", "ForwardedHeader", "normalize_ip"]

ForwardedHeader = Literal["auto", "x-forwarded-for", "forwarded"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNKNOWN_PEER = "unknown"
_XFF = b"x-forwarded-for"
_FORWARDED = b"forwarded"
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _Malformed(Exception):
    pass


def _parse_ip(text: str) -> _IPAddress | None:
    if "%" in text:  # zone id: meaningless beyond the link, never part of a key
        text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalize_ip(text: str) -> str:
    """Canonical text of an IP address (IPv4-mapped IPv6 as IPv4); other text is returned as is."""
    address = _parse_ip(text)
    return text if address is None else str(address)


def _strip_port(node: str) -> str:
    """``[v6]:port`` -> ``v6``, ``v4:port`` -> ``v4``; a bare address is returned unchanged."""
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            raise _Malformed
        rest = node[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _Malformed
        return node[1:end]
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def _parse_forwarded(value: str) -> list[str | None]:
    """The ``for=`` node of each element, left to right (``None`` when an element has none)."""
    nodes: list[str | None] = []
    current: str | None = None
    i, n = 0, len(value)
    expect_pair = True
    while True:
        while i < n and value[i] in " \t":
            i += 1
        if expect_pair:
            start = i
            while i < n and value[i] in _TCHARS:
                i += 1
            name = value[start:i].lower()
            if not name or i >= n or value[i] != "=":
                raise _Malformed
            i += 1
            if i < n and value[i] == '"':
                i += 1
                chars: list[str] = []
                while True:
                    if i >= n:
                        raise _Malformed
                    ch = value[i]
                    if ch == "\\":
                        if i + 1 >= n:
                            raise _Malformed
                        chars.append(value[i + 1])
                        i += 2
                        continue
                    i += 1
                    if ch == '"':
                        break
                    chars.append(ch)
                token = "".join(chars)
            else:
                start = i
                while i < n and value[i] in _TCHARS:
                    i += 1
                token = value[start:i]
                if not token:
                    raise _Malformed
            if name == "for":
                if current is not None:
                    raise _Malformed  # two for= in one element
                current = token
            expect_pair = False
            continue
        if i >= n:
            nodes.append(current)
            return nodes
        if value[i] == ";":
            expect_pair = True
            i += 1
        elif value[i] == ",":
            nodes.append(current)
            current = None
            expect_pair = True
            i += 1
        else:
            raise _Malformed


def _parse_xff(value: str) -> list[str | None]:
    entries: list[str | None] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            raise _Malformed
        entries.append(part)
    return entries


@lru_cache(maxsize=4096)
def _group_v6(text: str, prefix: int) -> tuple[str, str]:
    """The network of an IPv6 address: as CIDR text, and as its first address (cached: both texts
    are slow to build, and one caller sends many requests)."""
    network = ipaddress.IPv6Network((text, prefix), strict=False)
    return str(network), str(network.network_address)


class ClientIPResolver:
    """Answers "which IP is this caller?" for one app, given the proxies in front of it.

    Args:
        trusted_proxies: IP addresses and CIDR networks of proxies whose forwarding headers are
            believed (``AUTHGATE_TRUSTED_PROXIES``). Empty: only the socket peer counts.
        header: which forwarding header to read from a trusted peer (see the module docstring).
        ipv6_prefix: prefix length :meth:`key` groups IPv6 addresses by (``None``: no grouping).

    Raises:
        ConfigurationError: an entry of ``trusted_proxies`` is not an IP address or network, or
            ``ipv6_prefix`` is outside 1..128.
    """

    __slots__ = ("_header", "_ipv6_prefix", "_networks", "_singles", "trusted_proxies")

    def __init__(
        self,
        trusted_proxies: Iterable[str] = (),
        *,
        header: ForwardedHeader = "auto",
        ipv6_prefix: int | None = 64,
    ) -> None:
        networks: list[_IPNetwork] = []
        singles: set[_IPAddress] = set()
        for entry in trusted_proxies:
            text = entry.strip()
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigurationError(
                    f"AUTHGATE_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network"
                ) from None
            if network.prefixlen == 0:
                raise ConfigurationError(
                    f"AUTHGATE_TRUSTED_PROXIES: {entry!r} trusts every address as a proxy, so any "
                    "client could name its own IP in X-Forwarded-For (rate limits by IP, reports); "
                    "list your proxies' addresses or networks instead"
                )
            if network.num_addresses == 1:
                singles.add(network.network_address)
            else:
                networks.append(network)
        if header not in ("auto", "x-forwarded-for", "forwarded"):
            raise ConfigurationError(f"unknown forwarding header {header!r}")
        if ipv6_prefix is not None and not 1 <= ipv6_prefix <= 128:
            raise ConfigurationError("ipv6_prefix must be between 1 and 128")
        self._networks = tuple(networks)
        self._singles = frozenset(singles)
        self._header = header
        self._ipv6_prefix = ipv6_prefix
        self.trusted_proxies: tuple[str, ...] = tuple(
            [str(s) for s in sorted(singles, key=str)] + [str(n) for n in networks]
        )

    def is_trusted(self, address: _IPAddress) -> bool:
        """True when ``address`` is one of the trusted proxies."""
        if address in self._singles:
            return True
        return any(
            address.version == network.version and address in network for network in self._networks
        )

    def trusts_peer(self, scope: Scope) -> bool:
        """True when the socket peer of ``scope`` is one of the trusted proxies."""
        if not self._singles and not self._networks:
            return False
        client = scope.get("client")
        address = _parse_ip(client[0]) if client else None
        return address is not None and self.is_trusted(address)

    def resolve(self, conn: HTTPConnection) -> str:
        """The caller's IP address as normalised text (the peer's own text when it is no IP)."""
        return self.resolve_scope(conn.scope)

    def resolve_scope(self, scope: Scope) -> str:
        """:meth:`resolve` for a raw ASGI scope (for pure-ASGI middleware)."""
        client = scope.get("client")
        peer: str = client[0] if client else _UNKNOWN_PEER
        if not self._singles and not self._networks:
            return peer if ":" not in peer else normalize_ip(peer)
        peer_address = _parse_ip(peer)
        if peer_address is None:
            return peer
        if not self.is_trusted(peer_address):
            return str(peer_address)
        found = self._from_headers(scope)
        return str(peer_address) if found is None else str(found)

    def key(self, conn: HTTPConnection) -> str:
        """The rate-limit key of the caller: :meth:`resolve`, with IPv6 grouped by network."""
        return self._grouped(conn, 0)

    def limit_address(self, conn: HTTPConnection) -> str:
        """:meth:`key` as one address, for a limiter elsewhere that counts by IP (Qyzar's).

        An IPv6 caller becomes the first address of its network (``2001:db8:1:2::`` for any
        address in ``2001:db8:1:2::/64``), so rotating the low bits buys no fresh bucket there
        either; other callers are :meth:`resolve`.
        """
        return self._grouped(conn, 1)

    def _grouped(self, conn: HTTPConnection, form: int) -> str:
        """:meth:`resolve`, an IPv6 address replaced by its network in ``form`` (see _group_v6)."""
        text = self.resolve_scope(conn.scope)
        if self._ipv6_prefix is None or ":" not in text:
            return text
        try:
            return _group_v6(text, self._ipv6_prefix)[form]
        except ValueError:
            return text

    def _from_headers(self, scope: Scope) -> _IPAddress | None:
        xff: list[str] = []
        forwarded: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == _XFF:
                xff.append(value.decode("latin-1"))
            elif name == _FORWARDED:
                forwarded.append(value.decode("latin-1"))
        mode = self._header
        try:
            if mode == "x-forwarded-for" or (mode == "auto" and not forwarded):
                return self._walk(_parse_xff(",".join(xff))) if xff else None
            if mode == "forwarded" or not xff:
                return self._walk(_parse_forwarded(",".join(forwarded)))
            from_xff = self._walk(_parse_xff(",".join(xff)))
            from_forwarded = self._walk(_parse_forwarded(",".join(forwarded)))
        except _Malformed:
            return None
        return from_xff if from_xff == from_forwarded else None

    def _walk(self, nodes: list[str | None]) -> _IPAddress | None:
        """Right to left: the first hop that is not a trusted proxy (or the leftmost one)."""
        address: _IPAddress | None = None
        for node in reversed(nodes):
            if node is None:
                return None
            address = _parse_ip(_strip_port(node))
            if address is None:
                return None  # malformed, obfuscated or "unknown": do not guess
            if not self.is_trusted(address):
                return address
        return address
