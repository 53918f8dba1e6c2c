"""JWKS/OIDC verifier: checks JWTs against an issuer's published keys.

:class:`JWKSVerifier` is the :class:`~fastapi_authgate.protocols.Verifier` for bearer tokens and
session cookies that are JWTs. It composes three single-purpose pieces, in the order a token
meets them:

* :class:`~fastapi_authgate.verifiers.token_cache.TokenCache`: a token verified before is served
  from memory until its ``exp``, or until the keys it was checked with are due for a refetch
  if that comes first (a retired key is only noticed by the refetch, which a cached token never
  reaches; an unchanged key set costs each token one verification per key-set lifetime);
* :mod:`fastapi_authgate._jws` parses the token strictly, then
  :class:`~fastapi_authgate.verifiers.jwks_keys.KeyManager` supplies the key for its ``kid``
  (fetching, caching and throttling the JWKS), :mod:`fastapi_authgate._jose` checks the signature
  under the algorithm allow-list, and :mod:`fastapi_authgate._claims` checks the claims.

This module only wires them; a :data:`~fastapi_authgate.protocols.ContextBuilder` (by default
:func:`~fastapi_authgate.verifiers.jwt_context.scope_context_builder`) turns the verified claims
into an :class:`AuthContext`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from fastapi_authgate._claims import ClaimsPolicy, validate_claims
from fastapi_authgate._http import is_this_machine
from fastapi_authgate._jose import KeySet, check_algorithms, verify_signature
from fastapi_authgate._jws import parse_compact, remember_header
from fastapi_authgate._redact import fingerprint
from fastapi_authgate.context import AuthContext, CredentialKind, Credentials, freeze_claims
from fastapi_authgate.errors import AuthenticationError, ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock, ContextBuilder
from fastapi_authgate.verifiers.jwks_keys import KeyManager
from fastapi_authgate.verifiers.jwt_context import (
    DEFAULT_SCOPE_CLAIMS,
    frozen_scope_context_builder,
)
from fastapi_authgate.verifiers.token_cache import TokenCache

__all__ = ["JWKSVerifier"]

logger = logging.getLogger(__name__)


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
        scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS,
        context_builder: ContextBuilder | None = None,
        refetch_on_bad_signature: bool = False,
        token_type: str | None = None,
        unsafe_any_audience: bool = False,
    ) -> None:
        """Validate the configuration; no network traffic happens here.

        Args:
            jwks_url: where the issuer publishes its keys.
            issuer: the exact ``iss`` tokens must carry (not checked when ``None``).
            discovery: find ``jwks_uri`` in ``{issuer}/.well-known/openid-configuration`` (whose
                ``issuer`` must equal ``issuer``) when no ``jwks_url`` is given.
            jwks: a static JWKS document instead of fetching one (see :meth:`from_jwks`).
            audience: the ``aud`` value(s) accepted; when set, ``aud`` is required. When not
                set, a token that carries ``aud`` is refused (it was minted for some API and
                this one cannot tell it is the one), unless ``unsafe_any_audience``.
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
            scope_claims: claims whose values become :attr:`AuthContext.scopes` (default
                builder only).
            context_builder: turns verified claims into the :class:`AuthContext`; default:
                ``sub``, ``sid`` as the session and scopes from ``scope_claims``. It may raise
                :class:`AuthenticationError` to refuse a token; any other exception, or a result
                that is not an :class:`AuthContext`, is logged and answered 503.
            refetch_on_bad_signature: when a signature fails under a known ``kid``, refetch the
                JWKS once (behind the same cooldown and single flight as unknown ``kid``
                values) and retry if the issuer now publishes another key under that ``kid``.
            token_type: the JOSE ``typ`` header tokens must carry, such as ``at+jwt`` for
                RFC 9068 access tokens (compared as a media type: case-insensitive, the
                ``application/`` prefix optional); ``None`` does not check it.
            unsafe_any_audience: with no ``audience``, accept tokens whatever their ``aud``
                (an ID token or another API's token would then pass; avoid).

        Raises:
            ConfigurationError: no key source, unknown or mixed algorithms, leeway out of range,
                a static JWKS without usable keys, or other values out of range.
        """
        self.provider = provider
        self._algorithms = check_algorithms(algorithms)
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string (AUTHGATE_ISSUER)")
        self._issuer = issuer
        self._policy = ClaimsPolicy(
            issuer, _audiences(audience), leeway, any_audience=bool(unsafe_any_audience)
        )
        # the configured issuer and audiences, to share with the claims that carry them: every
        # cached context keeps its claims, and these strings would otherwise be kept per token
        self._shared_values: dict[str, str] = {value: value for value in self._policy.audiences}
        if issuer is not None:
            self._shared_values[issuer] = issuer
        self._token_type = _media_type(token_type) if token_type is not None else None
        if token_type is not None and not self._token_type:
            raise ConfigurationError(
                "token_type must be a media type such as at+jwt (AUTHGATE_TOKEN_TYPE)"
            )
        static = _static_keys(jwks, self._algorithms) if jwks is not None else None
        if static is None:
            if jwks_url is None and not (discovery and issuer):
                raise ConfigurationError(
                    "JWKSVerifier needs jwks_url, or issuer with discovery=True "
                    "(AUTHGATE_JWKS_URL / AUTHGATE_ISSUER)"
                )
            if jwks_url is not None and not jwks_url.startswith(("https://", "http://")):
                raise ConfigurationError("jwks_url must be an http(s) URL (AUTHGATE_JWKS_URL)")
            source = jwks_url if jwks_url is not None else issuer
            if source is not None and _plain_http_off_machine(source):
                logger.warning(
                    "JWKS keys for %s will be fetched over plain http from another host: anyone "
                    "on the path could substitute keys and mint tokens; use https",
                    provider,
                )
        if not 0 <= min_cache_ttl <= max_cache_ttl or cache_ttl < 0:
            raise ConfigurationError("JWKS cache lifetimes must satisfy 0 <= min <= max")
        if refetch_cooldown < 0 or not fetch_deadline > 0 or max_token_bytes < 256:
            raise ConfigurationError(
                "refetch_cooldown must be >= 0, fetch_deadline > 0, max_token_bytes >= 256"
            )
        self._session_cookie = session_cookie
        self.cookie_names: tuple[str, ...] = (session_cookie,) if session_cookie else ()
        """The only cookie :meth:`verify` reads (``CookieReader``): the gate parses no other."""
        self._clock = clock
        self._max_token_bytes = max_token_bytes
        self._build_context = (
            context_builder
            if context_builder is not None
            else frozen_scope_context_builder(provider, scope_claims)
        )
        # the default builder always returns a context with the (checked) subject, so it is
        # called without _context's checks; a builder of the user's own is always checked
        self._build_default = self._build_context if context_builder is None else None
        if not callable(self._build_context):
            raise ConfigurationError("context_builder must be a callable (claims, credential)")
        self._refetch_on_bad_signature = bool(refetch_on_bad_signature)
        self._cache = TokenCache(token_cache_size, clock=clock) if token_cache_size else None
        self.cached_bearer: Callable[[bytes], AuthContext | None] = (
            self._cache.lookup if self._cache is not None else _nothing_cached
        )
        """The context of a bearer token verified before and still valid (``CachedBearerLookup``).

        The cache's own :meth:`~TokenCache.lookup`, so the gate's fast path is one call. On a miss
        the cache keeps the digest for the :meth:`verify` that follows in the same request: a
        fresh token is hashed once, not twice.
        """
        self._keys = KeyManager(
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
            on_keys_retired=self._cache.clear if self._cache is not None else None,
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

    @property
    def max_token_bytes(self) -> int:
        """The longest token this verifier reads; a longer one is refused, whatever its issuer."""
        return self._max_token_bytes

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
        raw: str | bytes = token
        cache_key: bytes | None = None
        if cache is not None:
            raw = token.encode("utf-8", "surrogatepass")  # parsed as these bytes too
            namespace = b"bearer" if kind == "bearer" else b"cookie"
            cache_key = cache.missed_key(raw, namespace)  # the gate's lookup just hashed them
            if cache_key is None:
                cache_key = cache.key_of_bytes(raw, namespace)
                context = cache.get(cache_key, self._clock())
                if context is not None:
                    return context
        try:
            unverified = parse_compact(raw, max_length=self._max_token_bytes)
            claims = unverified.claims
            iss = claims.get("iss")
            if self._issuer is not None and type(iss) is str and iss != self._issuer:
                return None  # another issuer's token: let a chain ask the next verifier
            header = unverified.header
            alg = header["alg"]
            if alg not in self._algorithms:
                raise AuthenticationError("The token algorithm is not allowed")
            if self._token_type is not None and _media_type(header.get("typ")) != self._token_type:
                raise AuthenticationError("The token type is not accepted")
            kid = header.get("kid")
            keys = self._keys
            key = keys.current_key(kid, alg)
            if key is None:
                key = await keys.key_for(kid, alg)
            try:
                verify_signature(unverified, key, self._algorithms)
            except AuthenticationError:
                if not self._refetch_on_bad_signature:
                    raise
                fresher = await keys.fresher_key(kid, alg, key)
                if fresher is None:
                    raise
                verify_signature(unverified, fresher, self._algorithms)
            remember_header(unverified)  # authentic now: the next token of this key skips it
            now = self._clock()
            validate_claims(claims, self._policy, now=now)
            shared = self._shared_values
            for name in ("iss", "aud"):  # equal strings, one object (see __init__)
                value = claims.get(name)
                if type(value) is str:
                    claims[name] = shared.get(value, value)
            build = self._build_default
            if build is not None:
                context = build(freeze_claims(claims), kind)
            else:
                context = self._context(freeze_claims(claims), kind)
        except AuthenticationError as exc:
            logger.debug("%s %s refused: %s", self.provider, fingerprint(token), exc.description)
            raise
        if cache is not None and cache_key is not None:
            nbf = claims.get("nbf")
            # no longer than the keys it was checked with are fresh: a key retired meanwhile is
            # noticed by the refetch, which a token answered from the cache would never reach
            fresh_until = keys.fresh_until
            exp = claims["exp"]  # an int or a finite float: checked above
            cache.put(
                cache_key,
                context,
                expires_at=exp if exp < fresh_until else fresh_until,
                now=now,
                not_before=float(nbf) - self._policy.leeway if nbf is not None else -math.inf,
            )
        return context

    def _context(self, claims: Mapping[str, Any], kind: CredentialKind) -> AuthContext:
        try:
            context = self._build_context(claims, kind)
        except AuthenticationError:
            raise
        except Exception as exc:
            logger.exception(
                "%s context builder failed on a verified token; answering 503", self.provider
            )
            raise ProviderError() from exc
        if not isinstance(context, AuthContext) or not context.subject:
            logger.error(
                "%s context builder returned %s, not an AuthContext with a subject; answering 503",
                self.provider,
                type(context).__name__,
            )
            raise ProviderError()
        return context

    async def startup(self) -> None:
        """Fetch the keys ahead of the first request; a failure is logged, never raised."""
        await self._keys.warm()

    async def aclose(self) -> None:
        """Close the HTTP client this verifier built (a shared one is left open)."""
        await self._keys.aclose()


def _nothing_cached(token: bytes) -> None:
    """``cached_bearer`` of a verifier whose token cache is off."""
    return None


def _plain_http_off_machine(url: str) -> bool:
    """True for an ``http://`` URL whose host is not this machine (loopback or ``localhost``)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    return not is_this_machine((parts.hostname or "").lower())


def _media_type(typ: Any) -> str | None:
    """RFC 7515 section 4.1.9: ``typ`` compares case-insensitively, ``application/`` optional."""
    if type(typ) is not str:
        return None
    typ = typ.strip().lower()
    return typ.removeprefix("application/") or None


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
