"""The only importer of python-jose: strict compact-JWS parsing, typed keys and claim checks.

python-jose's ``jwt.decode`` accepts any algorithm unless told otherwise, re-parses the token on
every call and builds a key object per call. This module uses python-jose for what it does well
(turning a JWK into a ``cryptography`` key and running the signature primitive) and does the rest
itself, in one pass per token:

* :func:`parse_compact` splits once, checks the base64url alphabet and a size cap, and decodes the
  header and payload as strict JSON objects (no duplicate keys, no ``NaN``); ``alg: none`` in any
  casing, JWE, unknown ``crit`` and ``b64: false`` are refused. ``jku``/``x5u``/``jwk``/``x5c``
  header members are never read.
* :class:`JoseKey` is built once per key when a JWKS arrives, with its ``kty``/``crv``/size checked
  against exactly one algorithm; :class:`KeySet` picks a key by ``kid`` (never "try every key").
* :func:`verify_signature` checks the algorithm against an explicit allow-list and the key, then
  calls the prepared key. HMAC is refused for asymmetric issuers, and PEM text is never an HMAC
  secret (the CVE-2024-33663 family).
* :func:`validate_claims` checks ``exp``/``nbf``/``iat``/``iss``/``aud``/``sub`` with a bounded
  leeway against an injected ``now``.

Every failure on client input, whatever library raised it, becomes an
:class:`~fastapi_authgate.errors.AuthenticationError` with a fixed description that never echoes
the token or its ``kid``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk as jose_jwk
from jose.backends import ECKey, RSAKey

from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.settings import MAX_LEEWAY_SECONDS

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "ClaimsPolicy",
    "HMAC_ALGORITHMS",
    "JoseKey",
    "KeySet",
    "SUPPORTED_ALGORITHMS",
    "UnverifiedToken",
    "check_algorithms",
    "generate_private_jwk",
    "parse_compact",
    "public_jwk",
    "sign",
    "validate_claims",
    "verify_signature",
]

logger = logging.getLogger(__name__)

RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512"})
EC_ALGORITHMS: Final = frozenset({"ES256", "ES384", "ES512"})
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = RSA_ALGORITHMS | EC_ALGORITHMS
SUPPORTED_ALGORITHMS: Final = ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS

_KTY_FOR_ALG: Final = {
    **{alg: "RSA" for alg in RSA_ALGORITHMS},
    **{alg: "EC" for alg in EC_ALGORITHMS},
    **{alg: "oct" for alg in HMAC_ALGORITHMS},
}
_CURVE_FOR_ALG: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_ALG_FOR_CURVE: Final = {crv: alg for alg, crv in _CURVE_FOR_ALG.items()}
_HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_MIN_RSA_BITS: Final = 2048
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_UNDERSTOOD_CRIT: Final[frozenset[str]] = frozenset()
# 9999-12-31T23:59:59Z: later instants cannot become a datetime, so they are refused outright.
_MAX_TIMESTAMP: Final = 253_402_300_799
_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_MALFORMED: Final = "The token is malformed"
_BAD_SIGNATURE: Final = "The token signature is invalid"
_BAD_ALGORITHM: Final = "The token algorithm is not allowed"


# --------------------------------------------------------------------------------- key material


def generate_private_jwk(alg: str, *, kid: str) -> dict[str, Any]:
    """A fresh private JWK for ``alg`` (RSA 2048 for ``RS*``, the matching curve for ``ES*``).

    Raises:
        ConfigurationError: for an algorithm this package does not sign with.
    """
    if alg in RSA_ALGORITHMS:
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data = RSAKey(private, alg).to_dict()
    elif alg in EC_ALGORITHMS:
        curves: dict[str, ec.EllipticCurve] = {
            "ES256": ec.SECP256R1(),
            "ES384": ec.SECP384R1(),
            "ES512": ec.SECP521R1(),
        }
        data = ECKey(ec.generate_private_key(curves[alg]), alg).to_dict()
    elif alg in HMAC_ALGORITHMS:
        secret = _b64encode(secrets.token_bytes(_HMAC_MIN_BYTES[alg]))
        data = {"kty": "oct", "k": secret}
    else:
        raise ConfigurationError(f"cannot generate a key for algorithm {alg!r}")
    data.update({"kid": kid, "alg": alg, "use": "sig"})
    return dict(data)


def public_jwk(private_jwk: Mapping[str, Any]) -> dict[str, Any]:
    """``private_jwk`` without its private members (``d``, ``p``, ``q``, ``dp``, ``qi``, ...).

    For an ``oct`` key nothing public remains but the metadata.
    """
    return {name: value for name, value in private_jwk.items() if name not in _PRIVATE_MEMBERS}


@dataclass(frozen=True, slots=True, eq=False)
class JoseKey:
    """One key bound to exactly one algorithm, built once from a JWK and then only used.

    ``kty``, ``crv`` and size were checked against ``alg`` when it was built, so verifying with it
    needs no further checks on the key itself.
    """

    kid: str | None
    alg: str
    kty: str
    _verifier: Any = field(repr=False)
    _signer: Any = field(default=None, repr=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], *, default_alg: str | None = None) -> JoseKey:
        """Build a key from a JWK (public or private).

        Args:
            jwk: the JWK members.
            default_alg: the algorithm to bind when the JWK has no ``alg``; for ``EC`` keys the
                curve decides when neither is given.

        Raises:
            ConfigurationError: the key is unusable or weak: unknown ``kty``, ``use`` other than
                ``sig``, ``alg`` not matching ``kty``/``crv`` or ``default_alg``, RSA under 2048
                bits, an HMAC secret shorter than the hash, or members that do not decode.
        """
        if not isinstance(jwk, Mapping):
            raise ConfigurationError("a JWK must be a JSON object")
        kty = jwk.get("kty")
        if kty not in ("RSA", "EC", "oct"):
            raise ConfigurationError("unsupported key type (kty must be RSA, EC or oct)")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ConfigurationError("kid must be a string")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise ConfigurationError("key is not a signature key (use must be 'sig')")
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (
            not isinstance(key_ops, list) or not {"verify", "sign"} & set(map(str, key_ops))
        ):
            raise ConfigurationError("key_ops does not allow signatures")
        alg = _key_algorithm(jwk, kty, default_alg)
        try:
            built = jose_jwk.construct(dict(jwk), alg)
            prepared = built.prepared_key
        except Exception as exc:
            raise ConfigurationError("key members do not decode") from exc
        signer: Any = None
        if kty == "RSA":
            _check_rsa(prepared)
            if hasattr(prepared, "private_bytes"):
                signer, built = built, RSAKey(prepared.public_key(), alg)
        elif kty == "EC":
            if hasattr(prepared, "private_bytes"):
                signer, built = built, ECKey(prepared.public_key(), alg)
        else:
            if len(prepared) < _HMAC_MIN_BYTES[alg]:
                raise ConfigurationError(f"{alg} secret shorter than {_HMAC_MIN_BYTES[alg]} bytes")
            signer = built
        return cls(kid=kid, alg=alg, kty=kty, _verifier=built, _signer=signer)

    @property
    def can_sign(self) -> bool:
        """True when the key holds private material."""
        return self._signer is not None


def _key_algorithm(jwk: Mapping[str, Any], kty: str, default_alg: str | None) -> str:
    declared = jwk.get("alg")
    if declared is not None and not isinstance(declared, str):
        raise ConfigurationError("key alg must be a string")
    if declared is not None and default_alg is not None and declared != default_alg:
        raise ConfigurationError("key alg does not match the requested algorithm")
    alg = declared or default_alg
    if kty == "EC":
        crv = jwk.get("crv")
        if crv not in _ALG_FOR_CURVE:
            raise ConfigurationError("unsupported EC curve (crv must be P-256, P-384 or P-521)")
        alg = alg or _ALG_FOR_CURVE[crv]
        if _CURVE_FOR_ALG.get(alg) != crv:
            raise ConfigurationError(f"{alg} is not usable with curve {crv}")
    if alg is None:
        raise ConfigurationError("key has no alg and no default algorithm was given")
    if _KTY_FOR_ALG.get(alg) != kty:
        raise ConfigurationError(f"algorithm {alg!r} does not fit key type {kty}")
    if kty == "RSA" and not (isinstance(jwk.get("n"), str) and isinstance(jwk.get("e"), str)):
        raise ConfigurationError("RSA key needs n and e")
    if kty == "EC" and not (isinstance(jwk.get("x"), str) and isinstance(jwk.get("y"), str)):
        raise ConfigurationError("EC key needs x and y")
    if kty == "oct" and not isinstance(jwk.get("k"), str):
        raise ConfigurationError("oct key needs k")
    return alg


def _check_rsa(prepared: Any) -> None:
    # cryptography itself refuses an even or tiny public exponent when the key is built
    if prepared.key_size < _MIN_RSA_BITS:
        raise ConfigurationError(f"RSA key shorter than {_MIN_RSA_BITS} bits")


class KeySet:
    """Keys of one issuer, looked up by ``kid`` and algorithm; built once per JWKS document."""

    __slots__ = ("_by_kid", "_jwk_count", "_sole")

    def __init__(self, keys: Iterable[JoseKey]) -> None:
        by_kid: dict[str | None, dict[str, JoseKey]] = {}
        for key in keys:
            group = by_kid.setdefault(key.kid, {})
            if key.alg in group:
                logger.warning("JWKS holds two %s keys with the same kid; using the first", key.alg)
                continue
            group[key.alg] = key
        self._by_kid = by_kid
        self._jwk_count = len(by_kid)
        self._sole = next(iter(by_kid.values())) if len(by_kid) == 1 else None

    @classmethod
    def from_jwks(cls, jwks: Any, algorithms: frozenset[str]) -> KeySet:
        """Build the usable keys of a JWKS document for the allowed algorithms.

        A key that is malformed or weak is skipped with a warning, so one bad key never breaks
        the set; a key for an algorithm outside ``algorithms`` is left out quietly. ``oct`` keys
        are only used when every allowed algorithm is an HMAC one. A key without ``alg`` is bound
        to every allowed algorithm that fits its type.

        Raises:
            ValueError: the document is not an object with a ``keys`` list.
        """
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise ValueError("JWKS document is not an object with a 'keys' list")
        hmac_only = algorithms <= HMAC_ALGORITHMS
        keys: list[JoseKey] = []
        for index, jwk in enumerate(jwks["keys"]):
            try:
                keys.extend(_keys_for(jwk, algorithms, hmac_only))
            except ConfigurationError as exc:
                logger.warning("JWKS key #%d skipped: %s", index, exc.description)
        return cls(keys)

    def __len__(self) -> int:
        return self._jwk_count

    def find(self, kid: str | None, alg: str) -> JoseKey | None:
        """The key for a token's ``kid`` and ``alg``; ``None`` when no key has that ``kid``.

        A token without ``kid`` may only use the key of a set holding exactly one key.

        Raises:
            AuthenticationError: the ``kid`` is known but not for ``alg``, or a token without
                ``kid`` meets a set of several keys.
        """
        if kid is None:
            candidates = self._sole
            if candidates is None:
                raise AuthenticationError("The token does not name its signing key")
        else:
            candidates = self._by_kid.get(kid)
            if candidates is None:
                return None
        key = candidates.get(alg)
        if key is None:
            raise AuthenticationError(_BAD_ALGORITHM)
        return key


def _keys_for(jwk: Any, algorithms: frozenset[str], hmac_only: bool) -> list[JoseKey]:
    if not isinstance(jwk, Mapping):
        raise ConfigurationError("entry is not a JSON object")
    kty = jwk.get("kty")
    if kty == "oct" and not hmac_only:
        raise ConfigurationError("symmetric key ignored for an asymmetric issuer")
    declared = jwk.get("alg")
    if declared is not None:
        key = JoseKey.from_jwk(jwk)
        return [key] if key.alg in algorithms else []
    fitting = sorted(alg for alg in algorithms if _KTY_FOR_ALG.get(alg) == kty)
    if kty == "EC":
        fitting = [alg for alg in fitting if _CURVE_FOR_ALG[alg] == jwk.get("crv")]
    return [JoseKey.from_jwk(jwk, default_alg=alg) for alg in fitting]


def check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """Validate an algorithm allow-list and return it as a frozenset.

    Raises:
        ConfigurationError: empty list, unknown names (``none`` included), or HMAC mixed with
            asymmetric algorithms (the key-confusion setup).
    """
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    allowed = frozenset(algorithms)
    if not allowed:
        raise ConfigurationError("the algorithm allow-list is empty")
    unknown = allowed - SUPPORTED_ALGORITHMS
    if unknown:
        raise ConfigurationError(
            f"unsupported algorithms {sorted(map(str, unknown))}; "
            f"choose from {sorted(SUPPORTED_ALGORITHMS)}"
        )
    if allowed & HMAC_ALGORITHMS and allowed & ASYMMETRIC_ALGORITHMS:
        raise ConfigurationError("HMAC algorithms cannot be mixed with RSA/EC algorithms")
    return allowed


def sign(
    claims: Mapping[str, Any], key: JoseKey, *, headers: Mapping[str, Any] | None = None
) -> str:
    """Sign ``claims`` as a compact JWS with header ``alg``, ``typ: JWT`` and ``kid``.

    Extra ``headers`` are added; ``alg`` always stays the key's own.

    Raises:
        ConfigurationError: the key has no private material.
        TypeError: the claims are not JSON-serialisable.
    """
    if key._signer is None:
        raise ConfigurationError("this key has no private material and cannot sign")
    header: dict[str, Any] = {"alg": key.alg, "typ": "JWT"}
    if key.kid is not None:
        header["kid"] = key.kid
    if headers:
        header.update(headers)
    header["alg"] = key.alg
    signing_input = _b64json(header) + "." + _b64json(claims)
    signature = key._signer.sign(signing_input.encode("ascii"))
    return signing_input + "." + _b64encode(signature)


def _b64json(data: Mapping[str, Any]) -> str:
    return _b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8"))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------------------------- parsing


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
    raw = _b64decode(segment)
    value = _decoder.decode(raw.decode("utf-8"))
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    return value


def parse_compact(token: str, *, max_length: int = 8192) -> UnverifiedToken:
    """Split and decode a compact JWS, strictly, without trusting anything in it.

    Raises:
        AuthenticationError: too long, not three base64url parts, header or payload not a JSON
            object (or with duplicate members), JWE, ``alg`` missing or ``none``, ``b64: false``
            or a ``crit`` member this package does not understand.
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
    try:
        header = _decode_object(head)
        claims = _decode_object(body)
        signature = _b64decode(sig)
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise AuthenticationError(_MALFORMED) from exc
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
    return UnverifiedToken(
        header=header,
        claims=claims,
        signing_input=token[: len(head) + 1 + len(body)].encode("ascii"),
        signature=signature,
    )


def verify_signature(token: UnverifiedToken, key: JoseKey, algorithms: frozenset[str]) -> None:
    """Check the signature of ``token`` with ``key``, under an explicit algorithm allow-list.

    Raises:
        AuthenticationError: the token's ``alg`` is not allowed or not the key's, an HMAC key
            meets an allow-list with asymmetric algorithms, or the signature does not verify.
    """
    alg = token.header.get("alg")
    if alg != key.alg or alg not in algorithms:
        raise AuthenticationError(_BAD_ALGORITHM)
    if key.kty == "oct" and not algorithms <= HMAC_ALGORITHMS:
        raise AuthenticationError(_BAD_ALGORITHM)
    try:
        valid = key._verifier.verify(token.signing_input, token.signature)
    except Exception as exc:  # any library failure on client bytes is a bad signature
        raise AuthenticationError(_BAD_SIGNATURE) from exc
    if valid is not True:
        raise AuthenticationError(_BAD_SIGNATURE)


# -------------------------------------------------------------------------------------- claims


@dataclass(frozen=True, slots=True)
class ClaimsPolicy:
    """What a verified token's claims must satisfy.

    ``issuer`` ``None`` skips the ``iss`` check; an empty ``audiences`` skips the ``aud`` check
    (a present ``aud`` must still be well-formed). ``leeway`` is the clock skew in seconds allowed
    on ``exp``/``nbf``/``iat``.

    Raises:
        ConfigurationError: negative, non-finite or too large (> 300 s) leeway.
    """

    issuer: str | None
    audiences: frozenset[str]
    leeway: float = 30
    require_sub: bool = True

    def __post_init__(self) -> None:
        leeway = self.leeway
        if (
            isinstance(leeway, bool)
            or not isinstance(leeway, int | float)
            or not math.isfinite(leeway)
            or not 0 <= leeway <= MAX_LEEWAY_SECONDS
        ):
            raise ConfigurationError(
                f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds "
                "(AUTHGATE_LEEWAY_SECONDS)"
            )


def _timestamp(value: Any) -> float | None:
    """The value as a finite number within datetime's range, else ``None`` (bools excluded)."""
    kind = type(value)
    if (kind is int or (kind is float and math.isfinite(value))) and abs(value) <= _MAX_TIMESTAMP:
        return float(value)
    return None


def validate_claims(claims: Mapping[str, Any], policy: ClaimsPolicy, *, now: float) -> None:
    """Check the registered claims of a token whose signature was verified.

    Raises:
        AuthenticationError: ``exp`` missing or not a number, expired, ``nbf`` or ``iat`` in the
            future (beyond the leeway), ``iss`` not the issuer, ``aud`` not ours or malformed,
            ``sub`` missing or not a non-empty string.
    """
    leeway = policy.leeway
    if "exp" not in claims:
        raise AuthenticationError("The token has no expiry")
    exp = _timestamp(claims["exp"])
    if exp is None:
        raise AuthenticationError("The token expiry is invalid")
    if now - leeway >= exp:
        raise AuthenticationError("The token has expired")
    if "nbf" in claims:
        nbf = _timestamp(claims["nbf"])
        if nbf is None:
            raise AuthenticationError("The token not-before time is invalid")
        if nbf > now + leeway:
            raise AuthenticationError("The token is not valid yet")
    if "iat" in claims:
        iat = _timestamp(claims["iat"])
        if iat is None:
            raise AuthenticationError("The token issue time is invalid")
        if iat > now + leeway:
            raise AuthenticationError("The token was issued in the future")
    if policy.issuer is not None:
        iss = claims.get("iss")
        if type(iss) is not str or iss != policy.issuer:
            raise AuthenticationError("The token issuer is not accepted")
    if "aud" in claims or policy.audiences:
        _check_audience(claims.get("aud"), policy.audiences)
    sub = claims.get("sub")
    if (policy.require_sub or "sub" in claims) and (type(sub) is not str or not sub):
        raise AuthenticationError("The token subject is missing or invalid")


def _check_audience(aud: Any, audiences: frozenset[str]) -> None:
    if type(aud) is str:
        granted: frozenset[str] | tuple[str] = (aud,)
    elif type(aud) is list and aud and all(type(item) is str for item in aud):
        granted = frozenset(aud)
    else:
        raise AuthenticationError("The token audience is missing or invalid")
    if audiences and audiences.isdisjoint(granted):
        raise AuthenticationError("The token is not meant for this audience")
