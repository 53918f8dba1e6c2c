"""The JWKS key manager: an issuer's signing keys, fetched once and refreshed with care.

Keys are needed on every cache miss, but the issuer must never see one request per token. So:

* the first request (or :meth:`KeyManager.warm` at startup) fetches the JWKS, after optional
  OIDC discovery of ``jwks_uri`` whose document must name the configured issuer;
* the keys live for the ``Cache-Control`` ``max-age`` (``no-store``/``no-cache`` mean the lower
  bound), clamped between a minimum and a maximum lifetime;
* concurrent misses share one fetch (single flight: whoever waited on the lock sees that the
  attempt counter moved and takes the result);
* an unknown ``kid`` triggers a refetch at most once per cooldown, so a flood of forged ``kid``
  values never reaches the issuer; so does, when asked for (:meth:`KeyManager.fresher_key`), a
  signature that fails under a known ``kid`` (an issuer that rotated the key behind an old
  ``kid``): both share one cooldown and one single flight, so forged signatures cost the issuer
  at most one fetch per cooldown, whatever their mix;
* a refresh that drops a key (compared by RFC 7638 thumbprint, not ``kid``) tells the verifier,
  which forgets every token it verified before;
* when a refresh fails, the stale keys keep verifying (stale-if-error) and the next attempt
  waits a short backoff. Only with no usable key at all is a ``ProviderError`` (503) raised.

All JOSE work (building keys, picking one by ``kid``) is :mod:`fastapi_authgate._jose`'s; all
HTTP is :mod:`fastapi_authgate._http`'s.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Final

import anyio
import httpx

from fastapi_authgate._http import build_client, fetch_json
from fastapi_authgate._jose import JoseKey, KeySet
from fastapi_authgate._redact import redact_url
from fastapi_authgate.errors import AuthenticationError, ProviderError
from fastapi_authgate.protocols import Clock

__all__ = ["KeyManager"]

logger = logging.getLogger(__name__)

_JWKS_MAX_BYTES: Final = 512 * 1024
_MAX_ERROR_BACKOFF: Final = 5.0


class KeyManager:
    """The current keys of one issuer, fetched lazily, cached and refreshed with care.

    Built by :class:`~fastapi_authgate.verifiers.jwks.JWKSVerifier`; a static :class:`KeySet`
    (``static``) turns every fetch off.
    """

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
        on_keys_retired: Callable[[], None] | None = None,
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
        self._on_keys_retired = on_keys_retired

    @property
    def fresh_until(self) -> float:
        """When the held keys stop being trusted without a refetch (clock seconds; ``inf`` for a
        static set). A verified token may be remembered no longer than this: a key the issuer
        retires in the meantime is only noticed by the refetch."""
        return self._fresh_until

    def current_key(self, kid: str | None, alg: str) -> JoseKey | None:
        """The key for a token header when the held keys are fresh and have it; else ``None``.

        No I/O and no coroutine: the common case of :meth:`key_for`, asked first.

        Raises:
            AuthenticationError: the ``kid`` is known but not for ``alg`` (as :meth:`key_for`).
        """
        keys = self._keys
        if keys is None or self.clock() >= self._fresh_until:
            return None
        return keys.find(kid, alg)

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

    async def fresher_key(self, kid: str | None, alg: str, stale: JoseKey) -> JoseKey | None:
        """A different key for ``kid`` after a throttled refetch, or ``None``.

        Called when a signature failed under ``stale``: if the issuer now publishes another key
        under this ``kid`` (same cooldown and single flight as unknown ``kid`` values), that key
        is returned; otherwise ``None`` and the signature stays refused.

        Raises:
            AuthenticationError: the ``kid`` is now published for another algorithm only.
            ProviderError: never for a failed refetch while keys are held (stale-if-error).
        """
        if self._static:
            return None
        if self.clock() - self._last_attempt >= self.cooldown:
            keys = await self._refresh(unknown_kid=True)
        else:
            keys = self._current()  # another request may have refetched a moment ago
        key = keys.find(kid, alg)
        if key is None or key.thumbprint == stale.thumbprint:
            return None
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
                        redact_url(self.jwks_url or self.issuer),
                        len(self._keys),
                        self.error_backoff,
                    )
                    return self._keys
                self._retry_at = now + self.error_backoff
                raise ProviderError(retry_after=max(self.error_backoff, 1)) from exc
            self._attempts += 1
            self._error = None
            previous = self._keys
            if previous is not None and self._on_keys_retired is not None:
                retired = previous.thumbprints() - keys.thumbprints()
                if retired:
                    logger.info(
                        "JWKS from %s retired %d key(s); forgetting tokens verified before",
                        redact_url(self.jwks_url or self.issuer),
                        len(retired),
                    )
                    self._on_keys_retired()
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
            logger.warning("JWKS fetch from %s failed: %s; answering 503", redact_url(url), exc)
            raise ProviderError() from exc
        if not len(keys):
            logger.warning(
                "JWKS fetch from %s failed: no usable key; answering 503", redact_url(url)
            )
            raise ProviderError()
        ttl = self._ttl(headers.get("cache-control"))
        logger.info(
            "JWKS fetched from %s: %d keys, cached for %gs", redact_url(url), len(keys), ttl
        )
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
                redact_url(url),
                redact_url(self.issuer),
            )
            raise ProviderError()
        jwks_uri = data.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            logger.warning(
                "OIDC discovery from %s failed: no usable jwks_uri; answering 503", redact_url(url)
            )
            raise ProviderError()
        if url.startswith("https://") and not jwks_uri.startswith("https://"):
            # the document came over TLS but points at keys anyone on the path could replace
            logger.warning(
                "OIDC discovery from %s failed: jwks_uri %s downgrades to plain http; refusing "
                "it (set AUTHGATE_JWKS_URL explicitly if this is intended); answering 503",
                redact_url(url),
                redact_url(jwks_uri),
            )
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
        """Fetch the keys now unless some are held; a failure is logged, never raised."""
        if self._keys is None:
            with contextlib.suppress(ProviderError):
                await self._refresh(unknown_kid=False)

    async def aclose(self) -> None:
        """Close the HTTP client this manager built (a shared one is left open)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
