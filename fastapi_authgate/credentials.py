"""Reads credentials off a connection: the bearer token, the cookies and an API key.

It walks the raw ASGI header list once instead of building starlette's ``Headers`` and cookie
objects, because it runs on every guarded request. Another scheme (``Basic``) is simply not a
bearer token, so the request may still authenticate with a cookie.

A bearer credential that is present but malformed (RFC 6750 section 2.1 ``b64token`` syntax, over
16 KiB, or sent twice) is an :class:`AuthenticationError`. The alphabet check runs on the raw
header bytes with ``bytes.translate``, a C loop several times cheaper than a regular expression or
``str.isprintable`` on a 1 KiB token, because it precedes even the verified-token cache lookup.

Cookies are read only when there is no bearer token (the verifiers answer the bearer token first,
so cookies could not change the answer) and only the cookies asked for (``cookie_names``, which
the gate takes from the verifier): a large or odd ``Cookie`` header that carries none of ours
costs a substring search and refuses nothing. A cookie we read may appear once: two cookies of
one name (one set by a sibling subdomain, "cookie tossing") are refused as malformed instead of
letting whichever comes last win. With ``cookie_names=None`` every cookie is returned (for
verifiers that do not say what they read) and only the ``unique`` names are held to that rule.
"""

from __future__ import annotations

import string
from collections.abc import Collection
from http.cookies import _unquote

from starlette.requests import HTTPConnection

from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import AuthenticationError

__all__ = ["bearer_credentials", "parse_bearer", "raw_bearer", "read_cookies", "read_credentials"]

_B64TOKEN_ALPHABET = (string.ascii_letters + string.digits + "-._~+/=").encode("ascii")
_MAX_BEARER = 16 * 1024
_MAX_COOKIE = 16 * 1024
_new_tuple = tuple.__new__
# every field of Credentials after ``bearer``, at its default: a bearer-only Credentials
assert Credentials._fields[0] == "bearer"
_AFTER_BEARER = tuple(Credentials._field_defaults[name] for name in Credentials._fields[1:])


def parse_bearer(value: str | bytes) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; ``None`` for other schemes."""
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    scheme, sep, rest = raw.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    if not sep:
        raise AuthenticationError("Malformed bearer credentials")
    return bearer_credentials(rest.strip(b" ")).bearer


def bearer_credentials(token: bytes) -> Credentials:
    """Credentials holding just ``token`` (what follows ``Bearer ``, spaces trimmed), if valid.

    The one rule for a bearer token's syntax: :func:`parse_bearer` applies it, and so does the
    gate to what :func:`raw_bearer` found when the verified-token cache missed (the very bytes
    :func:`parse_bearer` would have checked, and beside a bearer token :func:`read_credentials`
    reads nothing), so a fresh token walks the headers once. Built with ``tuple.__new__``: a
    named tuple's own ``__new__`` is a Python frame, on the path of every fresh token.

    Raises:
        AuthenticationError: empty, over 16 KiB, outside the RFC 6750 ``b64token`` alphabet, or
            ``=`` anywhere but at the end.
    """
    if (
        not token
        or len(token) > _MAX_BEARER
        or token.translate(None, _B64TOKEN_ALPHABET)
        or b"=" in token.rstrip(b"=")
    ):
        raise AuthenticationError("Malformed bearer credentials")
    return _new_tuple(Credentials, (token.decode("ascii"), *_AFTER_BEARER))


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


def read_cookies(
    values: list[str],
    names: Collection[str] | None,
    unique: Collection[str] = (),
    *,
    repeated: set[str] | None = None,
) -> dict[str, str]:
    """The cookies ``names`` (every cookie when ``None``) of the ``Cookie`` header ``values``.

    Parsed as Starlette's ``cookie_parser`` does (``;``-separated, trimmed, quoted values
    unquoted), except that a name we read (each of ``names``, or of ``unique`` when reading
    everything) must not appear twice and its value must fit in 16 KiB. Other names that do
    repeat keep their last value and are added to ``repeated`` (``Credentials.duplicate_cookies``),
    so a verifier that reads every cookie can still refuse an ambiguous one.

    Raises:
        AuthenticationError: such a cookie is duplicated or too large.
    """
    found: dict[str, str] = {}
    for text in values:
        if names is not None and not any(name in text for name in names):
            continue
        for chunk in text.split(";"):
            key, sep, value = chunk.partition("=")
            if not sep:
                continue
            key = key.strip()
            if names is None:
                checked = key in unique
            elif key in names:
                checked = True
            else:
                continue
            value = value.strip()
            if checked:
                if key in found:
                    raise AuthenticationError("Duplicate session cookie")
                if len(value) > _MAX_COOKIE:
                    raise AuthenticationError("Session cookie too large")
            elif repeated is not None and key in found:
                repeated.add(key)
            found[key] = _unquote(value) if value[:1] == '"' else value
    return found


def read_credentials(
    conn: HTTPConnection,
    *,
    api_key_header: bytes | None = None,
    cookie_names: Collection[str] | None = None,
    unique_cookies: Collection[str] = (),
) -> Credentials | None:
    """Everything a verifier might use, or ``None`` when the connection carries no credential.

    Args:
        conn: the connection.
        api_key_header: lower-case name of a header carrying an API key (``None``: none).
        cookie_names: the cookies to read (``None``: all of them), see the module docstring.
        unique_cookies: with ``cookie_names=None``, the names that must not repeat.

    Raises:
        AuthenticationError: a malformed bearer token, two ``Authorization`` headers, or a
            duplicated or oversized cookie of ours.
    """
    bearer: str | None = None
    cookie_values: list[str] | None = None
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
            if cookie_values is None:
                cookie_values = [text]
            else:
                cookie_values.append(text)
        elif api_key_header is not None and name == api_key_header:
            api_key = value.decode("latin-1").strip() or None
    if bearer is not None:
        return Credentials(bearer=bearer, api_key=api_key)
    if cookie_values is None or (cookie_names is not None and not cookie_names):
        return None if api_key is None else Credentials(api_key=api_key)
    repeated: set[str] = set()
    cookies = read_cookies(cookie_values, cookie_names, unique_cookies, repeated=repeated)
    if api_key is None and not cookies:
        return None
    if repeated:
        return Credentials(cookies=cookies, api_key=api_key, duplicate_cookies=frozenset(repeated))
    return Credentials(cookies=cookies, api_key=api_key)
