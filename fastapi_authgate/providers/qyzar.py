"""Qyzar: the session verifier, plus the server helper's client and offline crypto module.

Wire format: ``providers/WIRE.md``, Qyzar section; the modules beside this one say what we chose
where it is silent. :class:`QyzarSessionVerifier` is what ``AUTHGATE_PROVIDER=qyzar`` builds:

* It reads the ``qyzar_session_token`` and ``qyzar_session_id`` cookies and asks Qyzar's session
  verify with those two cookies only, never the rest of the Cookie header. A request carrying
  neither is not a Qyzar request (``None``: another verifier may know it); one of them alone,
  either of them twice, or a value that is oversized or not a cookie-octet string is a 401
  without any upstream call. A session id in a cookie and a token elsewhere (a header, a bearer
  token) are never combined.
* A positive answer is cached (default 30 s, never past the session's ``expiresAt``) by the
  SHA-256 of the pair, and concurrent requests with one pair share one upstream call
  (:class:`~fastapi_authgate.verifiers.remote.RemoteVerificationCache`, in Redis too when
  ``AUTHGATE_REDIS_URL`` is set, so all workers share it).
* ``valid: false`` is a 401 ``invalid_token``; Qyzar down, slow past the deadline, 5xx or garbage
  is a 503 with ``Retry-After``; a refused project secret is a 503 and a loud log line naming
  ``AUTHGATE_QYZAR__PROJECT_SECRET``.
* The context: ``subject`` is the session's ``identifier`` when it has one, else the session id;
  ``session_id`` the session id; ``user.metadata`` the metadata (``user.email`` its ``email``);
  ``credential`` ``"cookie"``; ``expires_at`` the session's expiry.

The other modules:

* :mod:`~fastapi_authgate.providers.qyzar_client`: :class:`QyzarClient`, every method of the
  Node ``QyzarServer`` over HTTP;
* :mod:`~fastapi_authgate.providers.qyzar_results`: its frozen result types and
  :class:`QyzarError`;
* :mod:`~fastapi_authgate.providers.qyzar_tokens`: client tokens minted and checked offline.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi_authgate.context import AuthContext, Credentials, User
from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.protocols import Clock, ResultStore, Verifier
from fastapi_authgate.providers.qyzar_client import QyzarClient, SecretResolver
from fastapi_authgate.providers.qyzar_cookies import (
    SESSION_ID_COOKIE,
    SESSION_TOKEN_COOKIE,
    UNSET,
    Unset,
    session_pair,
)
from fastapi_authgate.providers.qyzar_results import (
    ClientTokenVerification,
    ExtraMetadata,
    LoginAttempt,
    LoginHistory,
    QyzarError,
    QyzarSecretError,
    RateLimitCheck,
    RequestEvent,
    RequestLogReceipt,
    SessionVerification,
    TrustedIdentifiers,
)
from fastapi_authgate.providers.qyzar_tokens import (
    DEFAULT_CLIENT_TOKEN_TTL,
    ClientToken,
    ClientTokenClaims,
    InvalidMetadataError,
    ProjectSecret,
    create_client_token,
    normalize_client_token_metadata,
    verify_client_token,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.remote import RemoteVerificationCache

__all__ = [
    "ClientToken",
    "ClientTokenClaims",
    "ClientTokenVerification",
    "DEFAULT_CLIENT_TOKEN_TTL",
    "ExtraMetadata",
    "InvalidMetadataError",
    "LoginAttempt",
    "LoginHistory",
    "ProjectSecret",
    "QyzarClient",
    "QyzarError",
    "QyzarSecretError",
    "QyzarSessionVerifier",
    "RateLimitCheck",
    "RequestEvent",
    "RequestLogReceipt",
    "SESSION_ID_COOKIE",
    "SESSION_TOKEN_COOKIE",
    "SecretResolver",
    "SessionVerification",
    "TrustedIdentifiers",
    "UNSET",
    "Unset",
    "create_client_token",
    "normalize_client_token_metadata",
    "session_pair",
    "verifier_from_settings",
    "verify_client_token",
]


logger = logging.getLogger(__name__)


class QyzarSessionVerifier:
    """Verifies Qyzar session cookies with Qyzar, behind a short positive cache and single flight.

    Args:
        client: the :class:`QyzarClient` to ask (the verifier closes it in :meth:`aclose`).
        cache_ttl: seconds a positive answer is reused (never past the session's expiry);
            0 asks Qyzar on every request (concurrent ones still share a call).
        cache_size: entries kept in process (0: none; a ``store`` may still share results).
        store: a shared result store (Redis) so every worker reuses one verification.
        clock: the time source of the cache.
        token_cookie, id_cookie: the two cookie names.

    Raises:
        ConfigurationError: a negative ``cache_ttl`` or ``cache_size``.
    """

    provider = "qyzar"

    def __init__(
        self,
        client: QyzarClient,
        *,
        cache_ttl: float = 30,
        cache_size: int = 10_000,
        store: ResultStore | None = None,
        clock: Clock = time.time,
        token_cookie: str = SESSION_TOKEN_COOKIE,
        id_cookie: str = SESSION_ID_COOKIE,
    ) -> None:
        self.client = client
        self.token_cookie = token_cookie
        self.id_cookie = id_cookie
        self._token_name = token_cookie.encode("latin-1")
        self._id_name = id_cookie.encode("latin-1")
        self.cache = RemoteVerificationCache(
            namespace=f"qyzar:{client.project_id}",
            ttl=cache_ttl,
            max_size=cache_size,
            clock=clock,
            store=store,
        )

    def __repr__(self) -> str:
        return f"QyzarSessionVerifier({self.client!r})"

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        """The session's context; ``None`` when the request carries no Qyzar cookie.

        Raises:
            AuthenticationError: the cookies are incomplete, ambiguous or malformed, or Qyzar
                says the session is not valid.
            QyzarError: Qyzar could not answer (a 503).
        """
        cookies = credentials.cookies
        names = (self.token_cookie, self.id_cookie)
        raw_token = cookies.get(names[0])
        raw_id = cookies.get(names[1])
        if raw_token is None and raw_id is None:
            return None
        duplicates = credentials.duplicate_cookies
        if duplicates and (names[0] in duplicates or names[1] in duplicates):
            raise AuthenticationError("The session cookies are ambiguous")
        if raw_token is not None and raw_id is not None:
            # a pair in the cache passed every check below before it was verified: answer it
            # before checking the values again (the common case costs a hash and a lookup)
            key = self.cache.key(f"{raw_id}\0{raw_token}")
            known = self.cache.peek(key)
            if known is not None:
                return known
        pair = session_pair(cookies, token_cookie=names[0], id_cookie=names[1])
        if not isinstance(pair, tuple):
            raise AuthenticationError("The session cookies are incomplete or malformed")
        session_id, session_token = pair
        key = self.cache.key(f"{session_id}\0{session_token}")

        async def call() -> AuthContext:
            result = await self.client.verify_session_from_cookies(
                {names[0]: session_token, names[1]: session_id},
                token_cookie=names[0],
                id_cookie=names[1],
            )
            if not result.valid:
                raise AuthenticationError("The session is not valid")
            if result.session_id != session_id:
                logger.warning(
                    "Qyzar session verify at %s answered for another session; answering 503",
                    self.client.api_url,
                )
                raise QyzarError("Qyzar session verify answered garbage", status=200)
            return _context(result)

        return await self.cache.verify(key, call)

    def cached_cookies(self, headers: list[tuple[bytes, bytes]]) -> AuthContext | None:
        """The cached context for the request's session cookies, read from the raw headers.

        The gate asks this before parsing any credential. It answers only when the one Cookie
        header names each Qyzar cookie exactly once, plainly, and no ``Authorization`` header is
        there; anything else is ``None``, and :meth:`verify` (which checks everything) decides.
        The pair is hashed exactly as :meth:`verify` hashes it, and only pairs that passed every
        check and Qyzar's verification are in the cache.
        """
        raw: bytes | None = None
        for name, value in headers:
            if name == b"cookie":
                if raw is not None:
                    return None
                raw = value
            elif name == b"authorization":
                return None
        if raw is None:
            return None
        session_id = _plain_cookie(raw, self._id_name)
        if session_id is None:
            return None
        session_token = _plain_cookie(raw, self._token_name)
        if session_token is None:
            return None
        return self.cache.peek(self.cache.key(session_id + b"\0" + session_token))

    @property
    def upstream_calls(self) -> int:
        """Session verifications that went to Qyzar (cache misses that were not shared)."""
        return self.cache.upstream_calls

    async def aclose(self) -> None:
        """Stop pending flights, close the shared store and the client."""
        await self.cache.aclose()
        await self.client.aclose()


def _plain_cookie(header: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` if it occurs exactly once, as ``name=value``, else ``None``."""
    at = header.find(name)
    if at < 0 or header.find(name, at + 1) >= 0:
        return None  # absent, or seen twice (perhaps inside another cookie): the full path
    if at > 0 and header[at - 1] not in b"; ":
        return None
    start = at + len(name)
    if header[start : start + 1] != b"=":
        return None
    end = header.find(b";", start)
    value = header[start + 1 : end if end >= 0 else len(header)].strip(b" ")
    if not value or value[:1] == b'"':
        return None
    return value


def _context(result: SessionVerification) -> AuthContext:
    session_id = result.session_id or ""
    subject = result.identifier or session_id
    metadata = result.metadata
    email = metadata.get("email")
    claims: dict[str, Any] = {"sid": session_id}
    if result.identifier is not None:
        claims["identifier"] = result.identifier
    return AuthContext(
        subject=subject,
        provider="qyzar",
        credential="cookie",
        session_id=session_id,
        claims=claims,
        expires_at=result.expires_at,
        user=User(id=subject, email=email if isinstance(email, str) else None, metadata=metadata),
    )


def verifier_from_settings(settings: AuthGateSettings) -> Verifier:
    """The Qyzar session verifier from ``AUTHGATE_QYZAR__*`` (and ``AUTHGATE_REDIS_URL``).

    Raises:
        ConfigurationError: ``AUTHGATE_QYZAR__API_URL``, ``__PROJECT_ID`` or ``__PROJECT_SECRET``
            missing or bad (the message names the first one), or Redis configured without the
            ``redis`` extra.
    """
    qyzar = settings.qyzar
    for variable, value in (
        ("AUTHGATE_QYZAR__API_URL", qyzar.api_url),
        ("AUTHGATE_QYZAR__PROJECT_ID", qyzar.project_id),
        (
            "AUTHGATE_QYZAR__PROJECT_SECRET",
            qyzar.project_secret.get_secret_value() if qyzar.project_secret else None,
        ),
    ):
        if not value or not value.strip():
            raise ConfigurationError(f"AUTHGATE_PROVIDER=qyzar needs {variable}")
    secret = qyzar.project_secret
    assert secret is not None and qyzar.api_url is not None and qyzar.project_id is not None
    client = QyzarClient(
        api_url=qyzar.api_url,
        project_id=qyzar.project_id,
        resolve_project_secret=lambda _project_id: secret,
        timeout=qyzar.timeout_seconds,
    )
    store: ResultStore | None = None
    if settings.redis_url is not None:
        from fastapi_authgate.ratelimit.redis_store import RedisStore
        from fastapi_authgate.verifiers.remote_store import RedisResultStore

        redis = RedisStore.from_url(settings.redis_url.get_secret_value()).client
        store = RedisResultStore(redis, close_client=True)
    return QyzarSessionVerifier(client, cache_ttl=qyzar.session_cache_seconds, store=store)
