"""The embedded development issuer: local keys, token minting and the JWKS to check them.

:class:`DevIssuer` lets the example app and your tests run with no account anywhere. It is for
**development and tests only**, never for production, because:

* its signing keys live in memory and are generated anew at every start, so every token it minted
  dies with the process (and a second worker has different keys);
* anyone who can reach its HTTP routes (:func:`fastapi_authgate.testing.dev_issuer_router`) can mint
  a token for any user with any scope: there is no password, by design.

The example app mounts those routes only when ``AUTHGATE_PROVIDER`` is unset or ``dev``; naming a
real provider removes them.

Wire format (what a real issuer would send, so the normal JWKS verifier checks it):

* JWS compact, header ``{"alg": "RS256" | "ES256", "kid": <RFC 7638 thumbprint>, "typ": "JWT"}``;
* claims ``iss``, ``aud`` (when an audience is set), ``sub``, ``iat``, ``nbf``, ``exp``, ``jti``,
  ``scope`` (space-separated, sorted) and ``sid`` for session tokens;
* the public keys as a JWKS document (``{"keys": [...]}``) with no private members.

The ``kid`` is the key's RFC 7638 thumbprint, so it is stable for the life of the key and a restart
(new key) always changes it, which makes a caching verifier refetch instead of failing forever.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from fastapi_authgate._jose import JoseKey, generate_private_jwk, public_jwk, sign
from fastapi_authgate.protocols import Clock
from fastapi_authgate.verifiers.jwks import JWKSVerifier

__all__ = ["DEFAULT_DEV_ISSUER", "DevIssuer"]

DEFAULT_DEV_ISSUER: Final = "http://127.0.0.1:8000"
"""The issuer the example app announces when served by ``scripts/run``."""

_SCOPE_RE: Final = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 scope-token charset
_THUMBPRINT_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    members = _THUMBPRINT_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _scope_string(scopes: Iterable[str]) -> str:
    if isinstance(scopes, str):
        raise TypeError("scopes must be an iterable of scope names, not one string")
    unique = sorted(set(scopes))
    for scope in unique:
        if not _SCOPE_RE.match(scope):
            raise ValueError("a scope must be non-empty printable ASCII without spaces or quotes")
    return " ".join(unique)


class DevIssuer:
    """Signs tokens with in-memory keys; for development and tests only (see the module docs).

    Args:
        issuer: the ``iss`` claim of every token and the verifier's expected issuer.
        audience: the ``aud`` claim (and the verifier's expected audience); ``None`` omits it.
        algorithm: ``"RS256"`` (default) or ``"ES256"``.
        clock: returns UNIX seconds; used for ``iat``/``nbf``/``exp`` and by :meth:`verifier`.
        leeway: clock skew the verifier from :meth:`verifier` allows, in seconds.
        private_jwk: sign with this key instead of generating one (for reproducible tests).
        provider: the ``AuthContext.provider`` name the verifier reports.
        session_cookie: the cookie the verifier reads a session token from.

    Raises:
        ValueError: for an algorithm other than RS256/ES256.
    """

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_DEV_ISSUER,
        audience: str | None = None,
        algorithm: Literal["RS256", "ES256"] = "RS256",
        clock: Clock = time.time,
        leeway: float = 0,
        private_jwk: Mapping[str, Any] | None = None,
        provider: str = "dev",
        session_cookie: str = "authgate_session",
    ) -> None:
        if algorithm not in ("RS256", "ES256"):
            raise ValueError("DevIssuer signs with RS256 or ES256 only")
        self.issuer = issuer
        self.audience = audience
        self.algorithm: str = algorithm
        self.clock = clock
        self.leeway = leeway
        self.provider = provider
        self.session_cookie = session_cookie
        if private_jwk is None:
            jwk = dict(generate_private_jwk(algorithm, kid="pending"))
            jwk["kid"] = _thumbprint(jwk)
        else:
            jwk = dict(private_jwk)
            jwk.setdefault("kid", _thumbprint(jwk))
        jwk["alg"] = algorithm
        self._key_jwk: Mapping[str, Any] = jwk
        self._key = JoseKey.from_jwk(jwk, default_alg=algorithm)
        self.kid: str = str(jwk["kid"])
        self._public = dict(public_jwk(jwk))
        self._public.update({"kid": self.kid, "alg": algorithm, "use": "sig"})

    def __repr__(self) -> str:
        return f"DevIssuer(issuer={self.issuer!r}, algorithm={self.algorithm!r}, kid={self.kid!r})"

    @property
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWKS document (``{"keys": [...]}``); it never holds private members."""
        return {"keys": [dict(self._public)]}

    def issue(
        self,
        sub: str,
        *,
        scopes: Iterable[str] = (),
        ttl: float = 3600,
        session_id: str | None = None,
        **claims: Any,
    ) -> str:
        """Mint a signed JWT for ``sub``.

        Args:
            sub: the subject (user id).
            scopes: granted scopes, joined into the ``scope`` claim.
            ttl: seconds until ``exp``; zero or negative mints an already expired token.
            session_id: sets the ``sid`` claim, which makes the token a session token.
            **claims: extra claims; they override the defaults, so tests can build odd tokens.

        Returns:
            The compact JWS.

        Raises:
            ValueError: for an empty subject or a scope that is not a valid scope token.
        """
        if not sub:
            raise ValueError("sub must not be empty")
        now = int(self.clock())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
        }
        if self.audience is not None:
            payload["aud"] = self.audience
        scope = _scope_string(scopes)
        if scope:
            payload["scope"] = scope
        if session_id is not None:
            payload["sid"] = session_id
        payload.update(claims)
        return sign(payload, self._key)

    def new_session(
        self, sub: str, scopes: Iterable[str] = (), *, ttl: float = 3600
    ) -> tuple[str, str]:
        """Start a session for ``sub``: returns ``(session_id, session_token)``.

        The token carries the fresh session id in ``sid``; send it as the session cookie.
        """
        session_id = "sess_" + secrets.token_urlsafe(16)
        return session_id, self.issue(sub, scopes=scopes, ttl=ttl, session_id=session_id)

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        """The OIDC discovery document for routes served under ``base_url``."""
        base = base_url.rstrip("/")
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/dev/token",
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
            "token_endpoint_auth_methods_supported": ["none"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "sid"],
        }

    def verifier(self, **overrides: Any) -> JWKSVerifier:
        """A verifier that trusts exactly this issuer's keys (static, no HTTP).

        Args:
            **overrides: keyword arguments passed on to ``JWKSVerifier.from_jwks`` in place of
                the defaults (issuer, audience, algorithms, leeway, clock, provider,
                session_cookie).
        """
        options: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.audience,
            "algorithms": [self.algorithm],
            "leeway": self.leeway,
            "clock": self.clock,
            "provider": self.provider,
            "session_cookie": self.session_cookie,
        }
        options.update(overrides)
        return JWKSVerifier.from_jwks(self.jwks, **options)
