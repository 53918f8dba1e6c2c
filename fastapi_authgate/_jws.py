"""Strict parsing of a compact JWS (RFC 7515 section 7.1), before anything in it is trusted.

A token is attacker input until its signature verifies, yet the header must be read first to
pick the key. So the parser is deliberately narrow, and every refusal is an
:class:`~fastapi_authgate.errors.AuthenticationError` with a fixed description that never echoes
the token:

* the size is capped before any work, and the three segments must match the base64url alphabet
  (one regex, no padding, no whitespace);
* header and payload must be JSON *objects*, decoded without duplicate members (two ``alg`` or
  two ``sub`` members would let two parsers disagree about one token), without ``NaN`` or
  ``Infinity``, without lone UTF-16 surrogates (RFC 7493 I-JSON; they cannot be encoded as UTF-8
  again, so a later log line, Redis key or JSON response would fail on them), and with nesting
  too deep for the decoder refused rather than crashing;
* ``alg: none`` in any casing, JWE (five segments or ``enc``), a ``crit`` member naming anything
  (this package understands no extension) and ``b64: false`` (RFC 7797) are refused.
  ``jku``/``x5u``/``jwk``/``x5c`` are never read, so a token cannot choose its own key.

Headers are remembered: every token of one issuer and key carries the same header segment, so a
header that passed every check is kept (read-only, in a small bounded map keyed by the segment)
and the next token with that segment skips its decoding. That saves about a quarter of the
parsing cost; a flood of distinct headers only churns the map, whose oldest entry makes room.

This module does not import python-jose: parsing needs only the standard library, and keeping it
apart lets :mod:`fastapi_authgate._jose` stay about keys and signatures.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from fastapi_authgate.errors import AuthenticationError

__all__ = ["UnverifiedToken", "parse_compact"]

_UNDERSTOOD_CRIT: Final[frozenset[str]] = frozenset()
_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# A \u escape of a UTF-16 surrogate: the only way JSON text that decoded as strict UTF-8 can
# produce a surrogate in a string. Seeing one triggers the (rarely needed) full check.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")

_MALFORMED: Final = "The token is malformed"


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A compact JWS split and decoded, but not yet trusted in any way."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes
    signature: bytes


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


def _b64decode(segment: str) -> bytes:
    # the alphabet was checked by _COMPACT, so the plain decoder sees only valid characters
    padded = segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4)
    return binascii.a2b_base64(padded)


def _decode_object(segment: str) -> dict[str, Any]:
    text = _b64decode(segment).decode("utf-8")
    value = _decoder.decode(text)
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    if _SURROGATE_ESCAPE.search(text) is not None:
        # raises UnicodeEncodeError (a ValueError) when a surrogate is not part of a valid pair
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


_checked_headers: dict[str, Mapping[str, Any]] = {}
_CHECKED_HEADERS_MAX: Final = 256


def _checked_header(segment: str) -> Mapping[str, Any]:
    """Decode and check a header segment; remember it (read-only) once it passed."""
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
    frozen = MappingProxyType(header)
    if len(_checked_headers) >= _CHECKED_HEADERS_MAX:
        del _checked_headers[next(iter(_checked_headers))]
    _checked_headers[segment] = frozen
    return frozen


def parse_compact(token: str, *, max_length: int = 8192) -> UnverifiedToken:
    """Split and decode a compact JWS, strictly, without trusting anything in it.

    Raises:
        AuthenticationError: too long, not three base64url parts, header or payload not a JSON
            object (or with duplicate members, lone surrogates or too deep), JWE, ``alg``
            missing or ``none``, ``b64: false`` or a ``crit`` member this package does not
            understand.
    """
    if not isinstance(token, str):
        raise AuthenticationError(_MALFORMED)
    if len(token) > max_length:
        raise AuthenticationError("The token is too large")
    if _COMPACT.fullmatch(token) is None:
        if token.count(".") == 4:
            raise AuthenticationError("Encrypted tokens are not accepted")
        raise AuthenticationError(_MALFORMED)
    head, body, sig = token.split(".")
    header = _checked_headers.get(head)
    try:
        if header is None:
            header = _checked_header(head)
        claims = _decode_object(body)
        signature = _b64decode(sig)
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise AuthenticationError(_MALFORMED) from exc
    return UnverifiedToken(
        header=header,
        claims=claims,
        signing_input=token[: len(head) + 1 + len(body)].encode("ascii"),
        signature=signature,
    )
