"""tiun: trade the frontend's verification token for the user object, server side.

Wire format (``providers/WIRE.md``, tiun section, and ``tiun-verify-server-side.txt``)::

    POST <base>/live_api/s2s/v1/users/verification
    X-TIUN-API-KEY: <api key>
    {"userVerificationToken": "<token>"}

    200 {"isAuthenticated": true,
         "userInfo": {"userId": "u_1", "email": "a@example.com", "productAccess": ["pro"]}}
    200 {"isAuthenticated": false, "userInfo": null}
    401 the API key is invalid (ours, never the user's)

``<base>`` is ``https://api.tiun.live`` (live) or ``https://api-sandbox.tiun.live`` (sandbox);
``AUTHGATE_TIUN__API_URL`` overrides it. Where the documents are silent we chose:

* **The credential** is the ``Authorization: Bearer`` token (the document's "most commonly").
  A token that is not a signed compact JWT, or longer than ``max_token_bytes`` (default 4 KiB),
  is refused with 401 locally, without a call.
* **Answers.** ``isAuthenticated: true`` gives an :class:`AuthContext`: ``subject`` the
  ``userId``, ``user.email``, ``user.product_access`` (``productAccess`` as a list of ids, or an
  object ``{"<id>": true/false}`` whose true members count), each product also as the scope
  ``product:<id>``, ``credential`` ``"bearer"``, ``claims`` the ``userInfo`` object.
  ``isAuthenticated: false`` is 401 ``invalid_token``. Any other body is garbage: 503.
* **Failures** are 503 with ``Retry-After``: timeout (2 s for the whole exchange), connection
  failure, 5xx, non-JSON, a redirect (never followed: the API key must not travel to another
  host). A 401 means our API key is wrong: 503 too, never a 401 blamed on the user, and an error
  log line naming ``AUTHGATE_TIUN__API_KEY`` (at most once a minute; the key itself is never
  logged).
* **Cache.** Positive answers are reused for ``cache_ttl`` (30 s), never past the token's
  ``exp``, which is read unverified for this alone; keyed by the SHA-256 of the token, with
  single flight, optionally shared through Redis (see :mod:`fastapi_authgate.verifiers.remote`).
* **Environments.** tiun's keys have no documented format, so a sandbox key cannot be told from a
  live one before tiun answers 401 (which the log line then explains). What can be told is
  refused at startup: an ``API_URL`` on tiun's sandbox host with ``ENVIRONMENT=live`` or the
  reverse, and a plain-``http`` URL to anything but loopback (it would send the key in clear).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from fastapi_authgate._http import build_client, check_base_url, request_json
from fastapi_authgate._jws import parse_compact
from fastapi_authgate._redact import fingerprint
from fastapi_authgate.context import AuthContext, Credentials, User
from fastapi_authgate.errors import (
    AuthenticationError,
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
)
from fastapi_authgate.protocols import Clock, ResultStore
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.remote import RemoteVerificationCache

__all__ = [
    "LIVE_API_URL",
    "PRODUCT_SCOPE_PREFIX",
    "SANDBOX_API_URL",
    "TiunVerifier",
    "VERIFY_PATH",
    "parse_product_access",
    "product_scopes",
    "verifier_from_settings",
]

logger = logging.getLogger(__name__)

Environment = Literal["live", "sandbox"]

LIVE_API_URL: Final = "https://api.tiun.live"
SANDBOX_API_URL: Final = "https://api-sandbox.tiun.live"
VERIFY_PATH: Final = "/live_api/s2s/v1/users/verification"
PRODUCT_SCOPE_PREFIX: Final = "product:"
"""Each product in ``productAccess`` is granted as the scope ``product:<id>``."""

_BASE_URLS: Final[Mapping[str, str]] = {"live": LIVE_API_URL, "sandbox": SANDBOX_API_URL}
_HOSTS: Final[Mapping[str, str]] = {"api.tiun.live": "live", "api-sandbox.tiun.live": "sandbox"}
_MAX_BODY: Final = 64 * 1024
_BAD_KEY_RETRY_AFTER: Final = 30.0
_BAD_KEY_LOG_INTERVAL: Final = 60.0
_SCOPE_SAFE: Final = frozenset(
    "!#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"
)


class TiunVerifier:
    """Verifies tiun verification tokens by exchanging them with tiun's UserVerification API.

    Args:
        api_key: the server API key of ``environment`` (``AUTHGATE_TIUN__API_KEY``).
        environment: ``"live"`` or ``"sandbox"``; picks the base URL and must match the key.
        api_url: overrides the base URL (a proxy, or a fake tiun in tests).
        cache_ttl: seconds a positive answer is reused (0: ask tiun every time).
        cache_size: answers kept in process.
        store: a shared cache tier (for instance Redis), so every worker reuses one answer.
        timeout: seconds for the whole exchange with tiun, body included.
        max_token_bytes: longer tokens are refused without a call.
        clock: returns UNIX seconds; injected in tests.
        http_client: a shared client (the verifier then does not close it).

    Raises:
        ConfigurationError: an empty or non-printable key, an unknown environment, a URL that is
            not http(s), a tiun host of the other environment, or plain http off loopback.
    """

    provider = "tiun"

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        environment: Environment = "sandbox",
        api_url: str | None = None,
        cache_ttl: float = 30,
        cache_size: int = 10_000,
        store: ResultStore | None = None,
        timeout: float = 2.0,
        max_token_bytes: int = 4096,
        clock: Clock = time.time,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not isinstance(secret, str) or not secret or not _header_safe(secret):
            raise ConfigurationError(
                "AUTHGATE_TIUN__API_KEY must be the tiun API key: non-empty printable text "
                "without spaces"
            )
        if environment not in _BASE_URLS:
            raise ConfigurationError("AUTHGATE_TIUN__ENVIRONMENT must be 'live' or 'sandbox'")
        if not timeout > 0 or not math.isfinite(timeout) or max_token_bytes < 64:
            raise ConfigurationError("tiun: timeout must be > 0 and max_token_bytes >= 64")
        self.environment: Environment = environment
        self.api_url = _check_url(api_url, environment) if api_url else _BASE_URLS[environment]
        self._endpoint = self.api_url.rstrip("/") + VERIFY_PATH
        self._headers = {"X-TIUN-API-KEY": secret, "Content-Type": "application/json"}
        self._timeout = timeout
        self._max_token_bytes = max_token_bytes
        self._clock = clock
        self._client = http_client
        self._owns_client = http_client is None
        self._bad_key_logged_at = -math.inf
        self.cache = RemoteVerificationCache(
            # tiun answers per account (API key): two accounts sharing one Redis must never meet
            namespace=f"tiun:{environment}:{self.api_url}:{_account_tag(secret)}",
            ttl=cache_ttl,
            max_size=cache_size,
            clock=clock,
            store=store,
        )

    def __repr__(self) -> str:
        return f"TiunVerifier(environment={self.environment!r}, api_url={self.api_url!r})"

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        """Exchange the bearer token with tiun (or reuse a recent answer).

        Returns ``None`` when there is no bearer token (a cookie is not tiun's credential).

        Raises:
            AuthenticationError: not a tiun token's shape, or tiun says the user is not
                authenticated.
            ProviderError: tiun is down, slow, answered garbage or a redirect, or refused our
                API key.
        """
        token = credentials.bearer
        if token is None:
            return None
        unverified = parse_compact(token, max_length=self._max_token_bytes)
        if not unverified.signature:
            raise AuthenticationError("The token is not a signed tiun verification token")
        exp = unverified.claims.get("exp")
        not_after = (
            float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
        )
        if not_after is not None and not math.isfinite(not_after):
            not_after = None
        key = self.cache.key(token)

        async def exchange() -> AuthContext:
            return await self._exchange(token, not_after)

        return await self.cache.verify(key, exchange, not_after=not_after)

    def cached_bearer(self, token: bytes) -> AuthContext | None:
        """A recent positive answer for exactly these token bytes (see ``CachedBearerLookup``)."""
        return self.cache.lookup(token)

    async def _exchange(self, token: str, not_after: float | None) -> AuthContext:
        client = self._client
        if client is None:
            client = self._client = build_client(timeout=self._timeout)
        try:
            data, _ = await request_json(
                client,
                "POST",
                self._endpoint,
                json={"userVerificationToken": token},
                headers=self._headers,
                deadline=self._timeout,
                max_bytes=_MAX_BODY,
                what=f"tiun user verification ({self.environment})",
                api_errors=True,
            )
        except ProviderResponseError as exc:
            if exc.status == 401:
                self._log_bad_key(token)
                raise ProviderError(retry_after=_BAD_KEY_RETRY_AFTER) from exc
            raise ProviderError(retry_after=exc.retry_after) from exc
        return self._context(data, token, not_after)

    def _context(self, data: Any, token: str, not_after: float | None) -> AuthContext:
        if not isinstance(data, dict) or type(data.get("isAuthenticated")) is not bool:
            raise self._garbage("no boolean isAuthenticated")
        if not data["isAuthenticated"]:
            raise AuthenticationError("The tiun user is not authenticated")
        info = data.get("userInfo")
        if not isinstance(info, dict):
            raise self._garbage("userInfo is not an object")
        user_id, email = info.get("userId"), info.get("email")
        if not isinstance(user_id, str) or not user_id:
            raise self._garbage("userInfo.userId is not a non-empty string")
        if email is not None and not isinstance(email, str):
            raise self._garbage("userInfo.email is not a string")
        try:
            products = parse_product_access(info.get("productAccess"))
        except ValueError as exc:
            raise self._garbage(str(exc)) from exc
        expires_at = None
        if not_after is not None:
            try:
                expires_at = datetime.fromtimestamp(not_after, UTC)
            except (OverflowError, OSError, ValueError):
                expires_at = None
        logger.debug("tiun verified %s as user %s", fingerprint(token), user_id[:64])
        return AuthContext(
            subject=user_id,
            provider=self.provider,
            credential="bearer",
            scopes=product_scopes(products),
            claims=info,
            expires_at=expires_at,
            user=User(id=user_id, email=email, product_access=products),
        )

    def _garbage(self, reason: str) -> ProviderError:
        logger.warning(
            "tiun user verification (%s) at %s answered an unusable body: %s; answering 503",
            self.environment,
            self._endpoint,
            reason,
        )
        return ProviderError()

    def _log_bad_key(self, token: str) -> None:
        now = time.monotonic()
        if now - self._bad_key_logged_at < _BAD_KEY_LOG_INTERVAL:
            return
        self._bad_key_logged_at = now
        logger.error(
            "tiun refused our API key (HTTP 401 from %s): AUTHGATE_TIUN__API_KEY is invalid, "
            "revoked, or a key of the other environment (AUTHGATE_TIUN__ENVIRONMENT=%s; live and "
            "sandbox keys are not interchangeable). Every tiun user gets 503 until the key is "
            "fixed. (Token %s; this line repeats at most once a minute.)",
            self._endpoint,
            self.environment,
            fingerprint(token),
        )

    async def startup(self) -> None:
        logger.info("tiun: verifying users with %s (%s)", self._endpoint, self.environment)

    async def aclose(self) -> None:
        """Close the HTTP client this verifier built and the cache's store."""
        await self.cache.aclose()
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()


def parse_product_access(value: object) -> frozenset[str]:
    """``productAccess`` as a set of product ids; both WIRE.md shapes, ``None`` meaning none.

    Raises:
        ValueError: neither a list of strings nor an object of booleans.
    """
    if value is None:
        return frozenset()
    if isinstance(value, list):
        if not all(isinstance(item, str) and item for item in value):
            raise ValueError("productAccess list holds something other than product ids")
        return frozenset(value)
    if isinstance(value, dict):
        if not all(isinstance(flag, bool) for flag in value.values()):
            raise ValueError("productAccess object holds something other than booleans")
        return frozenset(product for product, granted in value.items() if granted and product)
    raise ValueError("productAccess is neither a list nor an object")


def product_scopes(products: frozenset[str]) -> frozenset[str]:
    """``product:<id>`` for each product id that can be written in a ``scope`` challenge."""
    return frozenset(
        PRODUCT_SCOPE_PREFIX + product for product in products if set(product) <= _SCOPE_SAFE
    )


def _header_safe(text: str) -> bool:
    return all("!" <= ch <= "~" for ch in text)


def _check_url(url: str, environment: Environment) -> str:
    url = check_base_url(url, "AUTHGATE_TIUN__API_URL")
    other = _HOSTS.get((urlsplit(url).hostname or "").lower())
    if other is not None and other != environment:
        raise ConfigurationError(
            f"AUTHGATE_TIUN__API_URL is tiun's {other} host but AUTHGATE_TIUN__ENVIRONMENT is "
            f"{environment}: use the base URL and API key of one environment"
        )
    return url


def verifier_from_settings(settings: AuthGateSettings) -> TiunVerifier:
    """The verifier ``AUTHGATE_PROVIDER=tiun`` builds from ``AUTHGATE_TIUN__*``.

    With ``AUTHGATE_REDIS_URL`` set, positive answers are shared through Redis by every worker.

    Raises:
        ConfigurationError: naming the first missing or bad variable.
    """
    tiun = settings.tiun
    if tiun.api_key is None or not tiun.api_key.get_secret_value():
        raise ConfigurationError("AUTHGATE_PROVIDER=tiun needs AUTHGATE_TIUN__API_KEY")
    verifier = TiunVerifier(
        tiun.api_key,
        environment=tiun.environment,
        api_url=tiun.api_url,
        cache_ttl=tiun.cache_seconds,
        timeout=tiun.timeout_seconds,
    )
    if settings.redis_url is not None and tiun.cache_seconds > 0:
        from fastapi_authgate.ratelimit.redis_store import RedisStore
        from fastapi_authgate.verifiers.remote_store import RedisResultStore

        client = RedisStore.from_url(settings.redis_url.get_secret_value()).client
        verifier.cache.store = RedisResultStore(client, close_client=True)
    return verifier


def _account_tag(api_key: str) -> str:
    """Which tiun account a cached answer belongs to: a digest of its API key, never the key.

    The namespace shows up in Redis key names, so it carries 64 bits of SHA-256, which tells
    accounts apart and says nothing usable about the key.
    """
    return hashlib.sha256(b"authgate-tiun-account\0" + api_key.encode()).hexdigest()[:16]
