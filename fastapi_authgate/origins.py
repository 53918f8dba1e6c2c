"""Cross-site checks for cookie sessions: CSRF and cross-site WebSocket hijacking.

A browser attaches cookies to requests that other sites start: a form that POSTs to us, a script
that opens a WebSocket to us. A bearer token is never attached by the browser, so only requests
that a *cookie* authenticated need this check, and only the ones that can change something:
unsafe methods (anything but ``GET``, ``HEAD``, ``OPTIONS``, ``TRACE``) and every WebSocket
handshake (a handshake is a ``GET``, and the socket it opens is read and written by the page).

The decision follows the browser's own signals, strongest first (the algorithm of Go's
``net/http.CrossOriginProtection``):

1. ``Sec-Fetch-Site`` (sent by every current browser, and a header no page can set): ``same-origin``
   or ``none`` (the user typed the URL or used a bookmark) passes. Any other value passes only when
   ``Origin`` is one of the allowed origins.
2. No ``Sec-Fetch-Site``: an ``Origin`` must be an allowed origin or, when none are configured,
   name the request's own host. ``Origin: null`` (sandboxed frames, opaque redirects) never passes.
3. Neither header: not a browser (or one too old to send ``Origin``), so nobody's ambient cookie is
   being ridden; it passes.

"The request's own host" is the ``Host`` header, or the last ``X-Forwarded-Host`` value when the
socket peer is one of ``AUTHGATE_TRUSTED_PROXIES`` (a proxy that rewrites ``Host``). A browser on
another site cannot make a victim's request carry a forged ``Host`` (it sets ``Host`` to where the
request goes, and a simple cross-site request cannot add ``X-Forwarded-Host``), so a lying ``Host``
only comes from a client that holds no victim's cookie. Still, once ``AUTHGATE_ALLOWED_ORIGINS`` is
set, ``Host`` is never consulted: only the listed origins (and ``Sec-Fetch-Site: same-origin``)
pass, which is what an app behind a ``Host``-rewriting proxy, or serving several front ends, wants.
List your own public origin there too. Comparison of origins is exact on scheme, host and port
(default ports elided, host lower-cased); the default same-host rule compares host and port only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.types import Scope

from fastapi_authgate.errors import ConfigurationError, CrossOriginError

__all__ = ["SAFE_METHODS", "OriginPolicy", "parse_origin"]

SAFE_METHODS: frozenset[str] = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
"""Methods that must not change state (RFC 9110 section 9.2.1); they are not checked."""

_DEFAULT_PORTS = {"http": 80, "https": 443}

_Origin = tuple[str, str, int]
"""``(scheme, host, port)`` of a serialized origin."""


def parse_origin(text: str) -> _Origin | None:
    """``(scheme, host, port)`` of a serialized origin (``https://app.example:8443``) or ``None``.

    Only ``http``/``https`` origins without userinfo, path, query or fragment qualify; the host is
    lower-cased and a missing port is the scheme's default, so equal origins compare equal.
    """
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    """``("example.com", 8443)`` of a ``Host`` value, ``None`` for the port when none is given."""
    try:
        parts = urlsplit("//" + value.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return host, port


class OriginPolicy:
    """Decides whether a cookie-authenticated request may come from where it says it comes from.

    Args:
        allowed_origins: serialized origins (``https://app.example``) whose requests pass; empty
            means "the request's own host" (see the module docstring).
        trusts_peer: whether a scope's socket peer is a trusted proxy, whose ``X-Forwarded-Host``
            is then believed (``ClientIPResolver.trusts_peer``); ``None``: never.

    Raises:
        ConfigurationError: an entry is not an ``http(s)://host[:port]`` origin (``*`` included:
            allowing every origin would switch the check off).
    """

    __slots__ = ("_allowed", "_trusts_peer")

    def __init__(
        self,
        allowed_origins: Iterable[str] = (),
        *,
        trusts_peer: Callable[[Scope], bool] | None = None,
    ) -> None:
        allowed: set[_Origin] = set()
        for entry in allowed_origins:
            origin = parse_origin(entry) if isinstance(entry, str) else None
            if origin is None:
                raise ConfigurationError(
                    f"AUTHGATE_ALLOWED_ORIGINS: {entry!r} is not an origin such as "
                    "https://app.example or http://localhost:3000 (no path, no wildcard)"
                )
            allowed.add(origin)
        self._allowed = frozenset(allowed)
        self._trusts_peer = trusts_peer

    @property
    def allowed_origins(self) -> frozenset[str]:
        """The configured origins, serialized (empty: the request's own host)."""
        return frozenset(
            f"{s}://{h}" + ("" if p == _DEFAULT_PORTS[s] else f":{p}") for s, h, p in self._allowed
        )

    @staticmethod
    def applies(scope: Scope) -> bool:
        """True for a WebSocket handshake and for an HTTP request with an unsafe method."""
        return scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS

    def check(self, scope: Scope) -> None:
        """Pass silently, or raise :class:`CrossOriginError` (403) for a cross-site request."""
        site: bytes | None = None
        origins: list[bytes] = []
        host: bytes | None = None
        forwarded_host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"sec-fetch-site":
                site = value.strip().lower()
            elif name == b"origin":
                origins.append(value)
            elif name == b"host":
                host = value
            elif name == b"x-forwarded-host":
                forwarded_host = value
        if len(origins) > 1:
            raise CrossOriginError()
        origin = parse_origin(origins[0].decode("latin-1")) if origins else None
        if site is not None:
            if site in (b"same-origin", b"none"):
                return
            if origin is not None and origin in self._allowed:
                return
            raise CrossOriginError()
        if not origins:
            return
        if origin is None:
            raise CrossOriginError()  # "null" or garbage
        if self._allowed:
            if origin in self._allowed:
                return
            raise CrossOriginError()
        trusts_peer = self._trusts_peer
        if forwarded_host is not None and trusts_peer is not None and trusts_peer(scope):
            host = forwarded_host.rsplit(b",", 1)[-1]
        if host is not None and _same_host(origin, host.decode("latin-1")):
            return
        raise CrossOriginError()


def _same_host(origin: _Origin, host_header: str) -> bool:
    parsed = _host_and_port(host_header)
    if parsed is None:
        return False
    host, port = parsed
    scheme, origin_host, origin_port = origin
    if host != origin_host:
        return False
    return port == origin_port or (port is None and origin_port == _DEFAULT_PORTS[scheme])
