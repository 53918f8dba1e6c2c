"""Reads credentials off a connection: the bearer token, the cookies and an API key.

It walks the raw ASGI header list once instead of building starlette's ``Headers`` and cookie
objects, because it runs on every guarded request. Cookies are parsed only when a ``Cookie`` header
is present. Another scheme (``Basic``) is simply not a bearer token, so the request may still
authenticate with a cookie.

A bearer credential that is present but malformed (RFC 6750 section 2.1 ``b64token`` syntax, over
16 KiB, or sent twice) is an :class:`AuthenticationError`. The alphabet check runs on the raw
header bytes with ``bytes.translate``, a C loop several times cheaper than a regular expression or
``str.isprintable`` on a 1 KiB token, because it precedes even the verified-token cache lookup.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from http.cookies import CookieError

from starlette.requests import HTTPConnection, cookie_parser

from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import AuthenticationError

__all__ = ["parse_bearer", "raw_bearer", "read_credentials"]

_B64TOKEN_ALPHABET = (string.ascii_letters + string.digits + "-._~+/=").encode("ascii")
_MAX_BEARER = 16 * 1024
_MAX_COOKIE_HEADER = 16 * 1024


def parse_bearer(value: str | bytes) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; ``None`` for other schemes."""
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    scheme, sep, rest = raw.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = rest.strip(b" ")
    if (
        not sep
        or not token
        or len(token) > _MAX_BEARER
        or token.translate(None, _B64TOKEN_ALPHABET)
        or b"=" in token.rstrip(b"=")
    ):
        raise AuthenticationError("Malformed bearer credentials")
    return token.decode("ascii")


def raw_bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The unchecked token bytes of the one ``Authorization: Bearer`` header, else ``None``.

    For the verified-token fast path only: it checks nothing, so its answer may only be used to
    look up a token that was fully verified before. ``None`` (no header, another scheme, or two
    ``Authorization`` headers) sends the caller down the normal path, which does the checking.
    """
    found: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None:
                return None
            found = value
    if found is None or found[:7].lower() != b"bearer ":
        return None
    return found[7:].strip(b" ")


def _parse_cookies(raw: str) -> Mapping[str, str]:
    if len(raw) > _MAX_COOKIE_HEADER:
        raise AuthenticationError("Cookie header too large")
    try:
        return cookie_parser(raw)
    except (CookieError, ValueError) as exc:  # pragma: no cover - starlette's parser is lenient
        raise AuthenticationError("Malformed cookies") from exc


def read_credentials(
    conn: HTTPConnection, *, api_key_header: bytes | None = None
) -> Credentials | None:
    """Everything a verifier might use, or ``None`` when the connection carries no credential."""
    bearer: str | None = None
    cookie_header: str | None = None
    api_key: str | None = None
    seen_authorization = False
    for name, value in conn.scope["headers"]:
        if name == b"authorization":
            if seen_authorization:
                raise AuthenticationError("Multiple Authorization headers")
            seen_authorization = True
            bearer = parse_bearer(value)
        elif name == b"cookie":
            text = value.decode("latin-1")
            cookie_header = text if cookie_header is None else f"{cookie_header}; {text}"
        elif api_key_header is not None and name == api_key_header:
            api_key = value.decode("latin-1").strip() or None
    if bearer is None and cookie_header is None and api_key is None:
        return None
    cookies = _parse_cookies(cookie_header) if cookie_header else {}
    if bearer is None and api_key is None and not cookies:
        return None
    if cookie_header is not None and cookie_header.count(";") >= len(cookies):
        # more chunks than names: some name may be repeated, and the parser kept only its last
        # value; verifiers must see that rather than trust whichever value came last
        repeated = _repeated_names(cookie_header)
        if repeated:
            return Credentials(bearer, cookies, api_key, repeated)
    return Credentials(bearer=bearer, cookies=cookies, api_key=api_key)


def _repeated_names(raw: str) -> frozenset[str]:
    """Cookie names that occur more than once in a Cookie header (split as starlette does)."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for chunk in raw.split(";"):
        name = chunk.split("=", 1)[0].strip() if "=" in chunk else ""
        if name in seen:
            repeated.add(name)
        seen.add(name)
    repeated.discard("")
    return frozenset(repeated)
