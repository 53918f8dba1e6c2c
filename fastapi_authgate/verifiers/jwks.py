"""JWKS/OIDC verifier: checks JWTs against an issuer's published keys.

Three parts, each small:

* :class:`TokenCache` remembers verified tokens (by SHA-256 of the token) until their ``exp``, so
  a repeated token costs a hash and a dict lookup instead of parsing and RSA/ECDSA.
* ``_KeyManager`` owns the issuer's keys: optional OIDC discovery, a TTL from ``Cache-Control``
  (clamped), one fetch for any number of concurrent misses, a refetch on an unknown ``kid`` at
  most once per cooldown (so forged ``kid`` floods never reach the issuer), and stale keys kept
  when a refresh fails. Only with no usable key at all does it raise ``ProviderError`` (503).
* :class:`JWKSVerifier` ties them together behind the :class:`~fastapi_authgate.protocols.Verifier`
  protocol; all JOSE work is delegated to :mod:`fastapi_authgate._jose`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import httpx

from fastapi_authgate._http import build_client, fetch_json
from fastapi_authgate._jose import (
    ClaimsPolicy,
    JoseKey,
    KeySet,
    check_algorithms,
    parse_compact,
    validate_claims,
    verify_signature,
)
from fastapi_authgate._redact import fingerprint
from fastapi_authgate.context import AuthContext, CredentialKind, Credentials
from fastapi_authgate.errors import AuthenticationError, ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock

__all__ = ["JWKSVerifier", "TokenCache"]

logger = logging.getLogger(__name__)

_JWKS_MAX_BYTES: Final = 512 * 1024
_MAX_ERROR_BACKOFF: Final = 5.0


class TokenCache:
    """Verified tokens by SHA-256 digest, each valid only while ``not_before <= now < expires``.

    Bounded: when full, the oldest entry makes room (insertion order; a hit does not reorder, so a
    hit stays a single dict lookup). Entries are shared between requests, so store only frozen
    values such as :class:`AuthContext`. ``max_size`` 0 disables the cache.
    """

    __slots__ = ("_entries", "max_size")

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 0:
            raise ConfigurationError("token cache size must be >= 0")
        self.max_size = max_size
        self._entries: dict[bytes, tuple[AuthContext, float, float]] = {}

    @staticmethod
    def key(token: str, namespace: bytes = b"") -> bytes:
        """The cache key of ``token``: the SHA-256 digest of ``namespace + token``."""
        return hashlib.sha256(namespace + token.encode("utf-8", "surrogatepass")).digest()

    def get(self, key: bytes, now: float) -> AuthContext | None:
        """The cached context for ``key`` if it is still valid at ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now < entry[2]:
            return entry[0]
        if now >= entry[2]:
            self._entries.pop(key, None)
        return None

    def put(
        self,
        key: bytes,
        context: AuthContext,
        *,
        expires_at: float,
        now: float,
        not_before: float = -math.inf,
    ) -> None:
        """Remember ``context`` until ``expires_at`` (nothing is stored if that has passed)."""
        if self.max_size == 0 or expires_at <= now:
            return
        entries = self._entries
        if key not in entries and len(entries) >= self.max_size:
            del entries[next(iter(entries))]
        entries[key] = (context, not_before, expires_at)

    def clear(self) -> None:
        """Forget every entry (for instance after a key was revoked)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class _KeyManager:
    """The issuer's current keys, fetched lazily, cached and refreshed with care."""

    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        algorithms: frozenset[str],
        clock: Clock,
        cache_ttl: float,
        min_ttl: float,
        max_ttl: float,
        cooldown: float,
        deadline: float,
        http_client: httpx.AsyncClient | None,
        static: KeySet | None,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.algorithms = algorithms
        self.clock = clock
        self.cache_ttl, self.min_ttl, self.max_ttl = cache_ttl, min_ttl, max_ttl
        self.cooldown = cooldown
        self.deadline = deadline
        self.error_backoff = min(cooldown, _MAX_ERROR_BACKOFF)
        self._client = http_client
        self._owns_client = http_client is None
        self._static = static is not None
        self._keys: KeySet | None = static
        self._fresh_until = math.inf if static is not None else -math.inf
        self._last_attempt = -math.inf
        self._retry_at = -math.inf
        self._attempts = 0
        self._error: ProviderError | None = None
        self._lock = anyio.Lock()

    async def key_for(self, kid: str | None, alg: str) -> JoseKey:
        """The key for a token header, fetching or refreshing the JWKS when needed.

        Raises:
            AuthenticationError: no key has this ``kid`` (after at most one throttled refetch).
            ProviderError: no usable keys and the issuer cannot provide them now.
        """
        keys = self._keys
        refreshed = False
        if keys is None or self.clock() >= self._fresh_until:
            keys = await self._refresh(unknown_kid=False)
            refreshed = True
        key = keys.find(kid, alg)
        if (
            key is None
            and not refreshed
            and not self._static
            and self.clock() - self._last_attempt >= self.cooldown
        ):
            keys = await self._refresh(unknown_kid=True)
            key = keys.find(kid, alg)
        if key is None:
            raise AuthenticationError("The token signing key is unknown")
        return key

    async def _refresh(self, *, unknown_kid: bool) -> KeySet:
        seen = self._attempts
        async with self._lock:
            if self._attempts != seen:  # another task fetched while this one waited
                return self._current()
            now = self.clock()
            if self._keys is None and now < self._retry_at:
                raise ProviderError(retry_after=self._retry_at - now) from self._error
            if unknown_kid and self._keys is not None and now - self._last_attempt < self.cooldown:
                return self._keys
            self._last_attempt = now
            try:
                keys, ttl = await self._fetch()
            except ProviderError as exc:
                self._attempts += 1
                self._error = exc
                now = self.clock()
                if self._keys is not None:
                    self._fresh_until = now + self.error_backoff
                    logger.warning(
                        "JWKS refresh from %s failed; still verifying with %d cached keys "
                        "(stale-if-error), next attempt in %gs",
                        self.jwks_url or self.issuer,
                        len(self._keys),
                        self.error_backoff,
                    )
                    return self._keys
                self._retry_at = now + self.error_backoff
                raise ProviderError(retry_after=max(self.error_backoff, 1)) from exc
            self._attempts += 1
            self._error = None
            self._keys = keys
            self._fresh_until = self.clock() + ttl
            return keys

    def _current(self) -> KeySet:
        if self._keys is None:
            retry = max(self._retry_at - self.clock(), 1)
            raise ProviderError(retry_after=retry) from self._error
        return self._keys

    async def _fetch(self) -> tuple[KeySet, float]:
        client = self._client
        if client is None:
            client = self._client = build_client(timeout=self.deadline)
        url = self.jwks_url or await self._discover(client)
        data, headers = await fetch_json(
            client, url, deadline=self.deadline, max_bytes=_JWKS_MAX_BYTES, what="JWKS fetch"
        )
        try:
            keys = KeySet.from_jwks(data, self.algorithms)
        except ValueError as exc:
            logger.warning("JWKS fetch from %s failed: %s; answering 503", url, exc)
            raise ProviderError() from exc
        if not len(keys):
            logger.warning("JWKS fetch from %s failed: no usable key; answering 503", url)
            raise ProviderError()
        ttl = self._ttl(headers.get("cache-control"))
        logger.info("JWKS fetched from %s: %d keys, cached for %gs", url, len(keys), ttl)
        return keys, ttl

    async def _discover(self, client: httpx.AsyncClient) -> str:
        assert self.issuer is not None
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        data, _ = await fetch_json(
            client, url, deadline=self.deadline, max_bytes=_JWKS_MAX_BYTES, what="OIDC discovery"
        )
        if not isinstance(data, Mapping) or data.get("issuer") != self.issuer:
            logger.warning(
                "OIDC discovery from %s failed: the document's issuer is not %s; answering 503",
                url,
                self.issuer,
            )
            raise ProviderError()
        jwks_uri = data.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            logger.warning("OIDC discovery from %s failed: no usable jwks_uri; answering 503", url)
            raise ProviderError()
        self.jwks_url = jwks_uri
        return jwks_uri

    def _ttl(self, cache_control: str | None) -> float:
        ttl = self.cache_ttl
        for directive in (cache_control or "").lower().split(","):
            name, _, value = directive.strip().partition("=")
            if name in ("no-store", "no-cache"):
                ttl = 0
                break
            if name == "max-age":
                try:
                    ttl = int(value.strip().strip('"'))
                except ValueError:
                    continue
        return min(max(ttl, self.min_ttl), self.max_ttl)

    async def warm(self) -> None:
        if self._keys is None:
            with contextlib.suppress(ProviderError):
                await self._refresh(unknown_kid=False)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()


class JWKSVerifier:
    """Verifies JWTs signed by one issuer whose public keys are published as a JWKS.

    The bearer token is read first, else the session cookie. A token whose (unverified) ``iss`` is
    a different issuer's yields ``None``, so a chain can ask the next verifier; any other bad
    token raises :class:`AuthenticationError`. Signature, ``exp``, ``nbf``, ``iat``, ``iss``,
    ``aud`` and ``sub`` are always checked together.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        discovery: bool = False,
        jwks: Mapping[str, Any] | None = None,
        audience: str | Iterable[str] | None = None,
        algorithms: Iterable[str] = ("RS256", "ES256"),
        leeway: float = 30,
        clock: Clock = time.time,
        provider: str = "jwks",
        session_cookie: str | None = "authgate_session",
        token_cache_size: int = 10_000,
        max_token_bytes: int = 8192,
        cache_ttl: float = 300,
        min_cache_ttl: float = 60,
        max_cache_ttl: float = 86400,
        refetch_cooldown: float = 30,
        fetch_deadline: float = 5,
        http_client: httpx.AsyncClient | None = None,
        scope_claims: Iterable[str] = ("scope", "scp", "permissions"),
    ) -> None:
        """Validate the configuration; no network traffic happens here.

        Args:
            jwks_url: where the issuer publishes its keys.
            issuer: the exact ``iss`` tokens must carry (not checked when ``None``).
            discovery: find ``jwks_uri`` in ``{issuer}/.well-known/openid-configuration`` (whose
                ``issuer`` must equal ``issuer``) when no ``jwks_url`` is given.
            jwks: a static JWKS document instead of fetching one (see :meth:`from_jwks`).
            audience: the ``aud`` value(s) accepted; when set, ``aud`` is required.
            algorithms: the allow-list; HMAC cannot be mixed with RSA/EC.
            leeway: clock skew allowed on ``exp``/``nbf``/``iat``, at most 300 s.
            clock: returns UNIX seconds; injected in tests.
            provider: the name put in :attr:`AuthContext.provider`.
            session_cookie: the cookie read when there is no bearer token (``None``: none).
            token_cache_size: verified tokens remembered until their ``exp`` (0 disables).
            max_token_bytes: longer tokens are refused before parsing.
            cache_ttl: JWKS lifetime when the response has no ``Cache-Control: max-age``.
            min_cache_ttl: lower bound on the JWKS lifetime.
            max_cache_ttl: upper bound on the JWKS lifetime.
            refetch_cooldown: least seconds between fetches caused by unknown ``kid`` values.
            fetch_deadline: overall seconds for one discovery or JWKS fetch.
            http_client: a shared client (the verifier then does not close it).
            scope_claims: claims whose values become :attr:`AuthContext.scopes`.

        Raises:
            ConfigurationError: no key source, unknown or mixed algorithms, leeway out of range,
                a static JWKS without usable keys, or other values out of range.
        """
        self.provider = provider
        self._algorithms = check_algorithms(algorithms)
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string (AUTHGATE_ISSUER)")
        self._issuer = issuer
        self._policy = ClaimsPolicy(issuer, _audiences(audience), leeway)
        static = _static_keys(jwks, self._algorithms) if jwks is not None else None
        if static is None:
            if jwks_url is None and not (discovery and issuer):
                raise ConfigurationError(
                    "JWKSVerifier needs jwks_url, or issuer with discovery=True "
                    "(AUTHGATE_JWKS_URL / AUTHGATE_ISSUER)"
                )
            if jwks_url is not None and not jwks_url.startswith(("https://", "http://")):
                raise ConfigurationError("jwks_url must be an http(s) URL (AUTHGATE_JWKS_URL)")
        if not 0 <= min_cache_ttl <= max_cache_ttl or cache_ttl < 0:
            raise ConfigurationError("JWKS cache lifetimes must satisfy 0 <= min <= max")
        if refetch_cooldown < 0 or not fetch_deadline > 0 or max_token_bytes < 256:
            raise ConfigurationError(
                "refetch_cooldown must be >= 0, fetch_deadline > 0, max_token_bytes >= 256"
            )
        self._session_cookie = session_cookie
        self._clock = clock
        self._max_token_bytes = max_token_bytes
        self._scope_claims = tuple(scope_claims)
        self._cache = TokenCache(token_cache_size) if token_cache_size else None
        self._keys = _KeyManager(
            jwks_url=None if static is not None else jwks_url,
            issuer=issuer,
            algorithms=self._algorithms,
            clock=clock,
            cache_ttl=cache_ttl,
            min_ttl=min_cache_ttl,
            max_ttl=max_cache_ttl,
            cooldown=refetch_cooldown,
            deadline=fetch_deadline,
            http_client=http_client,
            static=static,
        )

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], **kwargs: Any) -> JWKSVerifier:
        """A verifier for a fixed set of keys: no HTTP at all (development issuer, tests).

        Raises:
            ConfigurationError: as the constructor, or when ``jwks`` holds no usable key.
        """
        return cls(jwks=jwks, **kwargs)

    @property
    def issuer(self) -> str | None:
        """The ``iss`` value this verifier accepts."""
        return self._issuer

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        """Verify the bearer token, else the session cookie; see the class docstring.

        Raises:
            AuthenticationError: the token is malformed, forged, expired or not for us.
            ProviderError: the issuer's keys are unavailable and none are cached.
        """
        token = credentials.bearer
        kind: CredentialKind = "bearer"
        if token is None:
            if self._session_cookie is None:
                return None
            token = credentials.cookies.get(self._session_cookie)
            if not token:
                return None
            kind = "cookie"
        cache = self._cache
        if cache is None:
            return await self._verify_token(token, kind, None)
        cache_key = cache.key(token, b"" if kind == "bearer" else b"cookie:")
        context = cache.get(cache_key, self._clock())
        if context is not None:
            return context
        return await self._verify_token(token, kind, cache_key)

    async def _verify_token(
        self, token: str, kind: CredentialKind, cache_key: bytes | None
    ) -> AuthContext | None:
        try:
            unverified = parse_compact(token, max_length=self._max_token_bytes)
            claims = unverified.claims
            iss = claims.get("iss")
            if self._issuer is not None and type(iss) is str and iss != self._issuer:
                return None  # another issuer's token: let a chain ask the next verifier
            alg = unverified.header["alg"]
            if alg not in self._algorithms:
                raise AuthenticationError("The token algorithm is not allowed")
            key = await self._keys.key_for(unverified.header.get("kid"), alg)
            verify_signature(unverified, key, self._algorithms)
            now = self._clock()
            validate_claims(claims, self._policy, now=now)
        except AuthenticationError as exc:
            logger.debug("%s %s refused: %s", self.provider, fingerprint(token), exc.description)
            raise
        context = self._context(claims, kind)
        if cache_key is not None and self._cache is not None:
            nbf = claims.get("nbf")
            self._cache.put(
                cache_key,
                context,
                expires_at=float(claims["exp"]),
                now=now,
                not_before=float(nbf) - self._policy.leeway if nbf is not None else -math.inf,
            )
        return context

    def _context(self, claims: Mapping[str, Any], kind: CredentialKind) -> AuthContext:
        scopes: set[str] = set()
        for name in self._scope_claims:
            value = claims.get(name)
            if type(value) is str:
                scopes.update(value.split())
            elif type(value) is list:
                scopes.update(item for item in value if type(item) is str and item)
        sid = claims.get("sid")
        return AuthContext(
            subject=claims["sub"],
            provider=self.provider,
            credential=kind,
            scopes=frozenset(scopes),
            session_id=sid if type(sid) is str and sid else None,
            claims=claims,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
        )

    async def startup(self) -> None:
        """Fetch the keys ahead of the first request; a failure is logged, never raised."""
        await self._keys.warm()

    async def aclose(self) -> None:
        """Close the HTTP client this verifier built (a shared one is left open)."""
        await self._keys.aclose()


def _audiences(audience: str | Iterable[str] | None) -> frozenset[str]:
    if audience is None:
        return frozenset()
    values = frozenset([audience] if isinstance(audience, str) else audience)
    if not all(isinstance(value, str) and value for value in values):
        raise ConfigurationError("audience values must be non-empty strings (AUTHGATE_AUDIENCE)")
    return values


def _static_keys(jwks: Mapping[str, Any], algorithms: frozenset[str]) -> KeySet:
    try:
        keys = KeySet.from_jwks(jwks, algorithms)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not len(keys):
        raise ConfigurationError("the JWKS holds no key usable with the allowed algorithms")
    return keys
