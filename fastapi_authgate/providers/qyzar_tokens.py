"""Qyzar client tokens offline: the "crypto module" of the server helper, in Python.

Wire format (``providers/WIRE.md``, Qyzar section): a compact JWS with header
``{"alg": "HS256", "typ": "JWT"}``, signed with the UTF-8 bytes of the project secret; claims
``iss: "qyzar"``, ``aud: <project id>``, ``iat``, ``exp`` (default 15 minutes; when bound to a
session never past the session's expiry), ``jti``, ``sid`` (only when bound) and ``md`` (the public
metadata, only when given). Qyzar's ``POST /projects/client/token`` mints the same token, so a token
minted online verifies here and the reverse.

Verification goes through the core's hardening: the strict compact-JWS parser (size cap, no
duplicate members, no ``none``/JWE/``crit``), an allow-list of exactly ``HS256`` (a token whose
header says anything else is refused before any key is used), python-jose's constant-time HMAC
comparison, and the claim checks with ``exp`` and ``aud`` required. What we chose where the document
is silent:

* a project secret shorter than 32 bytes cannot be used offline (RFC 7518 section 3.2: an HS256
  key must be at least as long as the hash); it is a :class:`ConfigurationError`;
* ``typ``, when present, must be ``JWT``; ``sid`` and ``jti`` must be strings and ``md`` an
  object, else the token is refused;
* a verified client token says only that *our server* minted it for a browser: it is not a
  logged-in user (see :func:`fastapi_authgate.qyzar_dependencies.require_client_token`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import SecretStr

from fastapi_authgate._claims import ClaimsPolicy, validate_claims
from fastapi_authgate._jose import JoseKey, sign, verify_signature
from fastapi_authgate._jws import parse_compact
from fastapi_authgate.context import freeze_mapping
from fastapi_authgate.errors import AuthenticationError, AuthGateError, ConfigurationError

__all__ = [
    "ClientToken",
    "ClientTokenClaims",
    "DEFAULT_CLIENT_TOKEN_TTL",
    "InvalidMetadataError",
    "ProjectSecret",
    "create_client_token",
    "normalize_client_token_metadata",
    "verify_client_token",
]

DEFAULT_CLIENT_TOKEN_TTL: Final = 15 * 60
"""Seconds a client token lives when nothing shorter binds it (WIRE.md: 15 minutes)."""

ISSUER: Final = "qyzar"
MAX_CLIENT_TOKEN_BYTES: Final = 8192
_ALGORITHMS: Final = frozenset({"HS256"})
_MAX_METADATA_BYTES: Final = 4096
_MAX_DEPTH: Final = 4
_MAX_KEY_LENGTH: Final = 64
_PHONE: Final = re.compile(r"\+[0-9]{8,15}")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+")

ProjectSecret = str | bytes | SecretStr
"""A project secret as text, bytes or a pydantic ``SecretStr``."""


class InvalidMetadataError(AuthGateError, ValueError):
    """Client-token metadata has the wrong shape; the message names the field."""

    error = "invalid_metadata"
    default_description = "The client token metadata is invalid"


@dataclass(frozen=True, slots=True)
class ClientToken:
    """A minted client token (online or offline) and when it expires. ``repr`` hides the token."""

    client_token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClientTokenClaims:
    """What a verified client token says: the bound session (if any) and the public metadata."""

    project_id: str
    session_id: str | None
    metadata: Mapping[str, Any]
    issued_at: datetime | None
    expires_at: datetime
    token_id: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))


def _secret_bytes(secret: ProjectSecret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise ConfigurationError(
            "the Qyzar project secret is empty (AUTHGATE_QYZAR__PROJECT_SECRET)"
        )
    return secret


_keys: dict[bytes, JoseKey] = {}
_KEYS_MAX: Final = 16


def _key(secret: ProjectSecret) -> JoseKey:
    """The HS256 key of a secret, built once (keyed by the secret's digest, never the secret)."""
    raw = _secret_bytes(secret)
    digest = hashlib.sha256(raw).digest()
    key = _keys.get(digest)
    if key is None:
        jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")}
        try:
            key = JoseKey.from_jwk(jwk, default_alg="HS256")
        except ConfigurationError as exc:
            raise ConfigurationError(
                "the Qyzar project secret cannot sign client tokens offline "
                f"({exc.description}; AUTHGATE_QYZAR__PROJECT_SECRET)"
            ) from None
        if len(_keys) >= _KEYS_MAX:
            del _keys[next(iter(_keys))]
        _keys[digest] = key
    return key


def _check_key(key: Any, where: str) -> None:
    if type(key) is not str or not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidMetadataError(
            f"metadata key at {where or 'top level'} must be a non-empty string of at most "
            f"{_MAX_KEY_LENGTH} characters"
        )


def _check_value(value: Any, where: str, depth: int) -> None:
    if value is None or type(value) in (str, bool, int):
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidMetadataError(f"metadata field {where!r} is not a finite number")
        return
    if depth >= _MAX_DEPTH:
        raise InvalidMetadataError(
            f"metadata field {where!r} is nested deeper than {_MAX_DEPTH} levels"
        )
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _check_key(key, where)
            _check_value(inner, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _check_value(inner, f"{where}[{index}]", depth + 1)
        return
    raise InvalidMetadataError(f"metadata field {where!r} is not a JSON value")


def normalize_client_token_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and normalise client-token metadata before minting (WIRE.md's rules).

    ``identifier``, ``email`` and ``phone`` must be strings when present (``email`` is trimmed and
    lower-cased, ``phone`` must be E.164: ``+`` and 8 to 15 digits); other keys hold any JSON,
    nested at most 4 levels; keys are non-empty strings of at most 64 characters; the whole object
    serialises to at most 4 KiB. ``None`` is the empty object.

    Returns:
        A new dict (the input is not changed).

    Raises:
        InvalidMetadataError: anything else, naming the field.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError("metadata must be a JSON object")
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        _check_key(key, "")
        if key in ("identifier", "email", "phone"):
            if type(value) is not str:
                raise InvalidMetadataError(f"metadata field {key!r} must be a string")
            if key == "email":
                value = value.strip().lower()
                if _EMAIL.fullmatch(value) is None:
                    raise InvalidMetadataError("metadata field 'email' is not an email address")
            elif key == "phone" and _PHONE.fullmatch(value) is None:
                raise InvalidMetadataError(
                    "metadata field 'phone' must be E.164 ('+' and 8 to 15 digits)"
                )
            elif key == "identifier" and not value:
                raise InvalidMetadataError("metadata field 'identifier' is empty")
        else:
            _check_value(value, key, 1)
        result[key] = value
    try:
        size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise InvalidMetadataError("metadata is not serialisable as JSON") from exc
    if size > _MAX_METADATA_BYTES:
        raise InvalidMetadataError(f"metadata serialises to {size} bytes, over 4096")
    return result


def create_client_token(
    secret: ProjectSecret,
    project_id: str,
    *,
    session_id: str | None = None,
    session_expires_at: float | datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    ttl: float = DEFAULT_CLIENT_TOKEN_TTL,
    now: float | None = None,
) -> ClientToken:
    """Mint a client token offline, exactly as Qyzar's ``POST /projects/client/token`` does.

    Args:
        secret: the project secret (at least 32 bytes).
        project_id: the token's audience.
        session_id: bind the token to this Qyzar session (claim ``sid``).
        session_expires_at: the bound session's expiry; the token never outlives it.
        metadata: public metadata (checked by :func:`normalize_client_token_metadata`).
        ttl: lifetime in seconds when nothing shorter binds it (default 15 minutes).
        now: the current UNIX time (default: the system clock).

    Raises:
        ConfigurationError: empty or short secret, empty project id, non-positive ``ttl``.
        InvalidMetadataError: the metadata has the wrong shape.
    """
    if not project_id:
        raise ConfigurationError("the Qyzar project id is empty (AUTHGATE_QYZAR__PROJECT_ID)")
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise ConfigurationError("client token ttl must be a positive number of seconds")
    key = _key(secret)
    issued = int(time.time() if now is None else now)
    expires = issued + int(ttl)
    if session_expires_at is not None:
        bound = (
            session_expires_at.timestamp()
            if isinstance(session_expires_at, datetime)
            else float(session_expires_at)
        )
        expires = min(expires, int(bound))
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": project_id,
        "iat": issued,
        "exp": expires,
        "jti": secrets.token_urlsafe(16),
    }
    if session_id is not None:
        claims["sid"] = session_id
    if metadata is not None:
        claims["md"] = normalize_client_token_metadata(metadata)
    return ClientToken(sign(claims, key), datetime.fromtimestamp(expires, UTC))


def verify_client_token(
    token: str,
    secret: ProjectSecret,
    project_id: str,
    *,
    leeway: float = 0,
    now: float | None = None,
) -> ClientTokenClaims:
    """Check a client token offline with the project secret.

    Args:
        token: the compact JWS.
        secret: the project secret.
        project_id: the audience the token must name.
        leeway: clock skew allowed on ``exp``/``iat``, in seconds (at most 300).
        now: the current UNIX time (default: the system clock).

    Raises:
        AuthenticationError: malformed, oversized, not HS256, forged, expired, issued in the
            future, for another project or issuer, or with a malformed ``sid``/``jti``/``md``.
        ConfigurationError: the secret is empty or too short to be an HS256 key.
    """
    key = _key(secret)
    parsed = parse_compact(token, max_length=MAX_CLIENT_TOKEN_BYTES)
    if parsed.header.get("alg") not in _ALGORITHMS:
        raise AuthenticationError("The token algorithm is not allowed")
    typ = parsed.header.get("typ")
    if typ is not None and typ != "JWT":
        raise AuthenticationError("The token is not a client token")
    verify_signature(parsed, key, _ALGORITHMS)
    claims = parsed.claims
    policy = ClaimsPolicy(
        issuer=ISSUER, audiences=frozenset({project_id}), leeway=leeway, require_sub=False
    )
    validate_claims(claims, policy, now=time.time() if now is None else now)
    sid = claims.get("sid")
    jti = claims.get("jti")
    md = claims.get("md", {})
    if (
        (sid is not None and (type(sid) is not str or not sid))
        or (jti is not None and type(jti) is not str)
        or not isinstance(md, dict)
    ):
        raise AuthenticationError("The token claims are malformed")
    iat = claims.get("iat")
    return ClientTokenClaims(
        project_id=project_id,
        session_id=sid,
        metadata=md,
        issued_at=datetime.fromtimestamp(iat, UTC) if iat is not None else None,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        token_id=jti,
    )
