"""The only importer of python-jose: typed keys, signing, and signature checks under an allow-list.

python-jose's ``jwt.decode`` accepts any algorithm unless told otherwise, re-parses the token on
every call and builds a key object per call. This module uses python-jose only for what it does
well (turning a JWK into a ``cryptography`` key); the signature is then checked by calling
``cryptography`` with that prepared key (:mod:`fastapi_authgate._keycheck`, set up once per key,
so a fresh token pays no per-call wrapper), HMAC excepted, which keeps python-jose's check; parsing
lives in :mod:`fastapi_authgate._jws` and claim checks in :mod:`fastapi_authgate._claims`, which
need no python-jose at all. Here:

* :class:`JoseKey` is built once per key when a JWKS arrives, with its ``kty``/``crv``/size checked
  against exactly one algorithm; :class:`KeySet` picks a key by ``kid`` (never "try every key").
* :func:`verify_signature` checks the algorithm against an explicit allow-list and the key, then
  calls the prepared key. HMAC is refused for asymmetric issuers, and an HMAC secret can only come
  from an ``oct`` JWK, never from PEM/SSH text (the CVE-2024-33663 family).
* :func:`check_algorithms` validates an allow-list once, at configuration time; :func:`sign` and
  :func:`generate_private_jwk` serve the development issuer and the tests.

Every failure on client input, whatever library raised it, becomes an
:class:`~fastapi_authgate.errors.AuthenticationError` with a fixed description that never echoes
the token or its ``kid``.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk as jose_jwk
from jose.backends import ECKey, RSAKey
from jose.utils import is_pem_format, is_ssh_key

from fastapi_authgate._keycheck import signature_check, thumbprint
from fastapi_authgate.errors import AuthenticationError, ConfigurationError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "JoseKey",
    "KeySet",
    "SUPPORTED_ALGORITHMS",
    "SignedToken",
    "check_algorithms",
    "generate_private_jwk",
    "public_jwk",
    "sign",
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

_BAD_SIGNATURE: Final = "The token signature is invalid"
_BAD_ALGORITHM: Final = "The token algorithm is not allowed"


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
    thumbprint: str = field(default="", repr=False)
    """The RFC 7638 SHA-256 thumbprint of the public key: equal exactly when the keys are."""
    _check: Callable[[bytes, bytes], bool] = field(default=lambda msg, sig: False, repr=False)

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
            # python-jose refuses PEM/SSH text as a raw HMAC secret but not inside a JWK's ``k``
            if is_pem_format(prepared) or is_ssh_key(prepared):
                raise ConfigurationError("an asymmetric key cannot be an HMAC secret")
            signer = built
        return cls(
            kid=kid,
            alg=alg,
            kty=kty,
            _verifier=built,
            _signer=signer,
            thumbprint=thumbprint(built.to_dict(), kty),
            _check=signature_check(
                built.prepared_key, kty, getattr(built, "hash_alg", None), built.verify
            ),
        )

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
        # a list or object here is unhashable: test the type first so it is a skipped key,
        # not a TypeError that breaks the whole JWKS
        if type(crv) is not str or crv not in _ALG_FOR_CURVE:
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

    def kids(self) -> frozenset[str | None]:
        """The key ids in the set."""
        return frozenset(self._by_kid)

    def thumbprints(self) -> frozenset[str]:
        """The RFC 7638 thumbprints of the keys, to tell whether a refresh retired any key.

        Thumbprints, not ``kid`` values: an issuer may publish a new key under an old ``kid``.
        """
        return frozenset(
            key.thumbprint for group in self._by_kid.values() for key in group.values()
        )

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


class SignedToken(Protocol):
    """What :func:`verify_signature` reads from a parsed token.

    :class:`fastapi_authgate._jws.UnverifiedToken` fits it. A protocol rather than an import,
    because ``_jws`` sits in the same layer and layers import strictly downward.
    """

    @property
    def header(self) -> Mapping[str, Any]: ...

    @property
    def signing_input(self) -> bytes: ...

    @property
    def signature(self) -> bytes: ...


def verify_signature(token: SignedToken, key: JoseKey, algorithms: frozenset[str]) -> None:
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
    if not key._check(token.signing_input, token.signature):
        raise AuthenticationError(_BAD_SIGNATURE)
