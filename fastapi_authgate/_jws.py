"""Strict parsing of a compact JWS (RFC 7515 section 7.1), before anything in it is trusted.

A token is attacker input until its signature verifies, yet the header must be read first to
pick the key. So the parser is deliberately narrow, and every refusal is an
:class:`~fastapi_authgate.errors.AuthenticationError` with a fixed description that never echoes
the token:

* the size is capped before any work, the token must be ASCII with exactly three segments, and
  each segment must be *canonical* base64url (RFC 7515 section 2: the URL-safe alphabet, no
  padding, no whitespace, and zero trailing bits), so one token has exactly one spelling, and
  one entry in any cache keyed by it; the header segment is capped at
  :data:`MAX_HEADER_LENGTH` characters;
* header and payload must be JSON *objects*, decoded without duplicate members (two ``alg`` or
  two ``sub`` members would let two parsers disagree about one token), without ``NaN`` or
  ``Infinity``, without lone UTF-16 surrogates (RFC 7493 I-JSON; they cannot be encoded as UTF-8
  again, so a later log line, Redis key or JSON response would fail on them), and with nesting
  too deep for the decoder refused rather than crashing;
* ``alg: none`` in any casing, JWE (five segments or ``enc``), a ``crit`` member naming anything
  (this package understands no extension) and ``b64: false`` (RFC 7797) are refused.
  ``jku``/``x5u``/``jwk``/``x5c`` are never read, so a token cannot choose its own key.

Headers are remembered: every token of one issuer and key carries the same header segment, so a
header whose *signature verified* is kept (read-only, in a small bounded map keyed by the
segment; :func:`remember_header`) and the next token with that segment skips its decoding. Only
authenticated headers get in, so unauthenticated requests cannot fill the map, and the size cap
bounds what each entry pins.

The hot path is written for speed, since every fresh token pays it: one ASCII encode, one split,
one ``bytes.translate`` per segment into the standard alphabet (which also turns ``+``, ``/`` and
``=`` into characters the strict decoder refuses) and the C JSON scanner called directly.

This module does not import python-jose: parsing needs only the standard library, and keeping it
apart lets :mod:`fastapi_authgate._jose` stay about keys and signatures.
"""

from __future__ import annotations

import binascii
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from fastapi_authgate.errors import AuthenticationError

__all__ = ["MAX_HEADER_LENGTH", "UnverifiedToken", "parse_compact", "remember_header"]

MAX_HEADER_LENGTH: Final = 2048
"""Longest header segment accepted (characters): ample for ``alg``, ``kid``, ``typ``, ``x5t``."""

_UNDERSTOOD_CRIT: Final[frozenset[str]] = frozenset()
# base64url -> standard alphabet; the standard-only characters and padding become "*", which the
# strict decoder refuses, so one translate both converts and validates the alphabet
_TO_STANDARD: Final = bytes.maketrans(b"-_+/=", b"+/***")
_PADDING: Final = (b"", b"", b"==", b"=")
# the last character of a canonical segment leaves no bits set beyond the data (RFC 4648 3.5)
_ZERO_LOW_4: Final = frozenset(b"AQgw")
_ZERO_LOW_2: Final = frozenset(b"AEIMQUYcgkosw048")
# A \u escape of a UTF-16 surrogate: the only way JSON text that decoded as strict UTF-8 can
# produce a surrogate in a string. Seeing one triggers the (rarely needed) full check.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")

_MALFORMED: Final = "The token is malformed"
_new_tuple: Final = tuple.__new__


class UnverifiedToken(NamedTuple):
    """A compact JWS split and decoded, but not yet trusted in any way.

    A named tuple: one is built per fresh token, and a tuple is built in a fraction of a frozen
    dataclass's time while being just as immutable.
    """

    header: Mapping[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    header_segment: bytes


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError("non-standard JSON constant")


_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
)
# the C scanner behind ``decode``, called directly: ``decode`` adds two Python frames and a regex
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


def _b64decode(segment: bytes) -> bytes:
    remainder = len(segment) & 3
    if remainder:
        last = segment[-1]
        if remainder == 1:
            raise ValueError("impossible base64 length")
        if last not in (_ZERO_LOW_4 if remainder == 2 else _ZERO_LOW_2):
            raise ValueError("non-canonical base64url")
    return binascii.a2b_base64(
        segment.translate(_TO_STANDARD) + _PADDING[remainder], strict_mode=True
    )


def _decode_object(segment: bytes) -> dict[str, Any]:
    text = _b64decode(segment).decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        # not a value at offset 0 (leading whitespace, or not JSON): the full decoder decides
        value, end = _decoder.decode(text), len(text)
    if end != len(text) and not text[end:].isspace():
        raise ValueError("extra data after the JSON value")
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        # raises UnicodeEncodeError (a ValueError) when a surrogate is not part of a valid pair
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


_checked_headers: OrderedDict[bytes, Mapping[str, Any]] = OrderedDict()
_CHECKED_HEADERS_MAX: Final = 256


def _checked_header(segment: bytes) -> Mapping[str, Any]:
    """Decode and check a header segment (not remembered: see :func:`remember_header`)."""
    header = _decode_object(segment)
    alg = header.get("alg")
    if type(alg) is not str:
        raise AuthenticationError(_MALFORMED)
    if alg.lower() == "none":
        raise AuthenticationError("Unsigned tokens are not accepted")
    if "enc" in header:
        raise AuthenticationError("Encrypted tokens are not accepted")
    kid = header.get("kid")
    if kid is not None and type(kid) is not str:
        raise AuthenticationError(_MALFORMED)
    if "crit" in header:
        crit = header["crit"]
        if (
            type(crit) is not list
            or not crit
            or not all(type(name) is str and name in _UNDERSTOOD_CRIT for name in crit)
        ):
            raise AuthenticationError("The token uses an unsupported critical header")
    if "b64" in header and header["b64"] is not True:
        raise AuthenticationError("Unencoded payloads are not accepted")
    return MappingProxyType(header)


def remember_header(token: UnverifiedToken) -> None:
    """Keep the checked header of a token whose signature verified, for the next token.

    Bounded: the oldest entry makes room (O(1)). Call it only after the signature verified, so
    only headers an issuer signed ever get in.
    """
    segment = token.header_segment
    if segment in _checked_headers:
        return
    if len(_checked_headers) >= _CHECKED_HEADERS_MAX:
        _checked_headers.popitem(last=False)
    _checked_headers[segment] = token.header


def parse_compact(token: str | bytes, *, max_length: int = 8192) -> UnverifiedToken:
    """Split and decode a compact JWS, strictly, without trusting anything in it.

    ``token`` may be the bytes it arrived as (a verifier that hashed them for its cache has them
    already), which saves encoding it once more; it must be ASCII either way.

    Raises:
        AuthenticationError: too long, not ASCII, not three canonical base64url parts, a header
            over :data:`MAX_HEADER_LENGTH`, header or payload not a JSON object (or with
            duplicate members, lone surrogates or too deep), JWE, ``alg`` missing or ``none``,
            ``b64: false`` or a ``crit`` member this package does not understand.
    """
    if type(token) is bytes:
        if len(token) > max_length:
            raise AuthenticationError("The token is too large")
        if not token.isascii():
            raise AuthenticationError(_MALFORMED)
        raw = token
    elif isinstance(token, str):
        if len(token) > max_length:
            raise AuthenticationError("The token is too large")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise AuthenticationError(_MALFORMED) from None
    else:
        raise AuthenticationError(_MALFORMED)
    parts = raw.split(b".")
    if len(parts) != 3:
        if len(parts) == 5:
            raise AuthenticationError("Encrypted tokens are not accepted")
        raise AuthenticationError(_MALFORMED)
    head, body, sig = parts
    if not head or not body:
        raise AuthenticationError(_MALFORMED)
    if len(head) > MAX_HEADER_LENGTH:
        raise AuthenticationError("The token header is too large")
    header = _checked_headers.get(head)
    try:
        if header is None:
            header = _checked_header(head)
        claims = _decode_object(body)
        signature = _b64decode(sig)
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise AuthenticationError(_MALFORMED) from exc
    # tuple.__new__ directly: a named tuple's generated __new__ is a Python frame, twice the cost
    return _new_tuple(
        UnverifiedToken, (header, claims, raw[: len(head) + 1 + len(body)], signature, head)
    )
