"""Reads credentials off a connection: the bearer token, the cookies and an API key. No checking.

It walks the raw ASGI header list once instead of building starlette's ``Headers`` and cookie
objects, because it runs on every guarded request. Cookies are parsed only when a ``Cookie`` header
is present. A bearer credential that is present but malformed (RFC 6750 section 2.1 ``b64token``
syntax, or sent twice) is an :class:`AuthenticationError`; another scheme (``Basic``) is simply not
a bearer token, so the request may still authenticate with a cookie.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http.cookies import CookieError

from starlette.requests import HTTPConnection, cookie_parser

from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import AuthenticationError

__all__ = ["parse_bearer", "read_credentials"]

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_COOKIE_HEADER = 16 * 1024


def parse_bearer(value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; ``None`` for other schemes."""
    scheme, sep, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip(" ")
    if not sep or not token or _B64TOKEN.fullmatch(token) is None:
        raise AuthenticationError("Malformed bearer credentials")
    return token


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
            bearer = parse_bearer(value.decode("latin-1"))
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
    return Credentials(bearer=bearer, cookies=cookies, api_key=api_key)
