"""Signature checks and key thumbprints for keys that :mod:`fastapi_authgate._jose` has built.

Kept apart from ``_jose`` so that module stays about turning JWKs into keys and choosing one: the
checks here take the already-prepared ``cryptography`` key and never import python-jose. They sit
below ``_jose`` in the layers because ``_jose`` calls them once per key it builds.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = ["signature_check", "thumbprint"]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signature_check(
    public: Any,
    kty: str,
    hash_alg: Callable[[], Any] | None,
    hmac_verify: Callable[[bytes, bytes], Any],
) -> Callable[[bytes, bytes], bool]:
    """``check(signing_input, signature) -> bool`` calling ``cryptography`` with the prepared key.

    ``public`` is the prepared public key, ``hash_alg`` the hash class of the key's algorithm
    (RSA and EC) and ``hmac_verify`` the library's own check, used for ``oct`` keys only.

    python-jose's ``verify`` builds the padding and hash objects, asks ``hasattr`` twice whether
    the key is public and (for EC) converts the signature on every call; here all of that is done
    once per key, and the key was checked against its one algorithm when it was built. HMAC keeps
    python-jose's constant-time check.
    """
    if kty == "RSA" and hash_alg is not None:
        pkcs1 = padding.PKCS1v15()
        digest = hash_alg()

        def check_rsa(message: bytes, signature: bytes) -> bool:
            try:
                public.verify(signature, message, pkcs1, digest)
            except Exception:  # InvalidSignature, or a library error on client bytes
                return False
            return True

        return check_rsa
    if kty == "EC" and hash_alg is not None:
        size = (public.curve.key_size + 7) // 8
        scheme = ec.ECDSA(hash_alg())

        def check_ec(message: bytes, signature: bytes) -> bool:
            if len(signature) != 2 * size:  # JWS carries r || s, each exactly ``size`` bytes
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            try:
                public.verify(der, message, scheme)
            except Exception:
                return False
            return True

        return check_ec

    if kty != "oct":
        raise ValueError(f"no signature check for key type {kty!r}")

    def check_hmac(message: bytes, signature: bytes) -> bool:
        try:
            return hmac_verify(message, signature) is True
        except Exception:
            return False

    return check_hmac


_THUMBPRINT_MEMBERS: Final = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def thumbprint(public: Mapping[str, Any], kty: str) -> str:
    """RFC 7638: SHA-256 over the required public members, sorted, without whitespace.

    ``public`` is the library's own export of the built key, so two spellings of one key (say a
    modulus with a leading zero byte) give one thumbprint. An ``oct`` key's members are secret,
    so its thumbprint is taken over a digest of ``k``, never ``k`` itself.
    """
    if kty == "oct":
        members = {"k": _b64encode(hashlib.sha256(str(public["k"]).encode()).digest()), "kty": kty}
    else:
        members = {name: public[name] for name in _THUMBPRINT_MEMBERS[kty]}
        members["kty"] = kty
    text = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64encode(hashlib.sha256(text.encode("utf-8")).digest())
