"""Every plug point of fastapi_authgate, as small structural protocols.

Users never inherit from anything here: any object with the right methods fits. Lifecycle hooks
(``startup``/``aclose``) are optional and discovered by the gate with ``getattr``, so a verifier
that holds no resources needs only ``verify``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from starlette.requests import HTTPConnection

from fastapi_authgate.context import AuthContext, CredentialKind, Credentials, Decision
from fastapi_authgate.events import Event, LoginEvent, LoginRisk

__all__ = [
    "CachedBearerLookup",
    "CachedCookieLookup",
    "Clock",
    "CookieReader",
    "ContextBuilder",
    "EventSink",
    "InProcessStore",
    "KeyFunc",
    "LoginScorer",
    "RateLimitStore",
    "ResultStore",
    "Verifier",
]

Clock = Callable[[], float]
"""Returns the current UNIX time in seconds; injected so tests never sleep."""

KeyFunc = Callable[[HTTPConnection, AuthContext | None], str | Awaitable[str]]
"""Builds a rate-limit key from a connection and the (optional) verified identity."""

ContextBuilder = Callable[[Mapping[str, Any], CredentialKind], AuthContext]
"""Turns the verified, read-only claims of a JWT and how it came (``"bearer"``/``"cookie"``) into
the :class:`AuthContext` routes receive. Called once per freshly verified token; may raise
:class:`~fastapi_authgate.errors.AuthenticationError` to refuse a token whose claims it rejects.
See :mod:`fastapi_authgate.verifiers.jwt_context` for the helpers and the default."""


class Verifier(Protocol):
    """Turns raw credentials into a verified identity.

    ``verify`` returns ``None`` when it does not recognise the credential at all (so a chain can ask
    the next verifier), returns an :class:`AuthContext` when the credential is valid, and raises
    :class:`~fastapi_authgate.errors.AuthenticationError` when it recognises the credential but the
    credential is bad, or :class:`~fastapi_authgate.errors.ProviderError` when it cannot decide.
    """

    provider: str

    async def verify(self, credentials: Credentials) -> AuthContext | None: ...


class CookieReader(Protocol):
    """Optional verifier capability: name the cookies it reads, so the gate reads only those.

    ``cookie_names`` lists every cookie ``verify`` may look at (empty: none). The gate then hands
    the verifier exactly these cookies, each required to appear once (a duplicate is a 401), and
    a request whose other cookies are large or odd is not refused for them. A verifier without the
    attribute gets every cookie, with only the gate's ``session_cookie`` held to the rule.
    """

    cookie_names: Collection[str]


class CachedBearerLookup(Protocol):
    """Optional verifier capability: answer a repeated bearer token from what it verified before.

    ``cached_bearer(token)`` gets the raw token bytes of an ``Authorization: Bearer`` header and
    returns the context it built the last time it verified exactly these bytes, if that is still
    valid, else ``None``; it never verifies anything new. The gate asks it before parsing any
    credentials, so a repeated token costs a hash and a dict lookup. A token only gets into such a
    cache after passing every check, so bytes that hash to an entry need no second look.
    """

    def cached_bearer(self, token: bytes) -> AuthContext | None: ...


class CachedCookieLookup(Protocol):
    """Optional verifier capability: answer repeated session cookies from what it verified before.

    ``cached_cookies(headers)`` gets the raw ASGI header list and returns the context it built the
    last time it verified exactly the same session cookies, if still valid, else ``None``; it
    never verifies anything new, and answers ``None`` for anything it cannot read at a glance
    (several Cookie headers, a cookie name seen twice, an ``Authorization`` header), which sends
    the request down the normal path that checks everything. Asked by the gate before any
    credential is parsed, like :class:`CachedBearerLookup`.
    """

    def cached_cookies(self, headers: list[tuple[bytes, bytes]]) -> AuthContext | None: ...


class RateLimitStore(Protocol):
    """Counts for the limiter: one atomic GCRA step per call.

    ``cost`` 0 asks without charging; a negative ``cost`` refunds, never below an empty bucket
    (failure-only rules charge up front and give the charge back unless the response failed).
    ``hit_many`` takes ``(key, limit, period)`` triples, the rules of one request, and charges all
    of them or none (one round trip for a multi-rule route).
    Raises :class:`~fastapi_authgate.errors.ProviderError` when the store cannot answer.
    """

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision: ...

    async def hit_many(
        self, buckets: Sequence[tuple[str, int, float]], *, cost: int = 1
    ) -> list[Decision]: ...

    async def aclose(self) -> None: ...


class DeadlineStore(RateLimitStore, Protocol):
    """A :class:`RateLimitStore` that times its own round trips, as the Redis store does.

    The limiter hands it its deadline once (``set_deadline``) and puts no timer around its calls:
    a timer around the call would also measure the wait for a connection and the event loop's
    backlog, which under load is most of it. Such a store raises a :class:`TimeoutError`
    (subclass) for a round trip that missed the deadline and never drops a connection for it.
    Discovered with ``getattr``, so this protocol is not ``@runtime_checkable``.
    """

    def set_deadline(self, seconds: float) -> None: ...


class InProcessStore(RateLimitStore, Protocol):
    """A :class:`RateLimitStore` that answers without waiting, as the memory store does.

    A store declares it with a true ``in_process`` attribute and the two synchronous methods
    below (same arguments and answers as ``hit``/``hit_many``). The limiter then calls them
    directly: no deadline (an in-process step cannot be slow, so ``anyio.fail_after`` around it
    would be pure overhead) and no coroutine per call. The limiter reads the attribute with
    ``getattr`` (an ``isinstance`` check on a protocol is slow and ignores the flag's value), so
    this protocol is not ``@runtime_checkable``.
    """

    in_process: bool

    def hit_now(self, key: str, limit: int, period: float, cost: int = 1) -> Decision: ...

    def hit_many_now(
        self, buckets: Sequence[tuple[str, int, float]], cost: int = 1
    ) -> list[Decision]: ...


class ResultStore(Protocol):
    """A shared home for short-lived verification results, so every worker sees one cache.

    Used by :class:`~fastapi_authgate.verifiers.remote.RemoteVerificationCache` as a second tier
    behind its in-process memory. Keys are hex digests (never a credential); values are JSON text
    that the cache wrote itself. ``set`` must forget the value after ``ttl`` seconds. Either
    method may raise: the cache treats a failing store as a miss and never fails a request on it.
    """

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl: float) -> None: ...


class EventSink(Protocol):
    """Delivers batches of activity events for the reporter's background worker.

    ``send`` gets one batch (never more than the sink's optional ``max_batch`` attribute) and
    returns when it is delivered, or raises. The reporter retries an exception that says a retry
    may help: a ``status`` (or ``status_code``, or ``response.status_code``) of 408, 429 or 5xx,
    a timeout or a connection error; it waits at least the exception's ``retry_after`` seconds
    when it has one. Any other exception fails the batch (counted, logged, never retried). An
    optional ``aclose()`` is awaited at shutdown after the last flush.
    """

    async def send(self, events: Sequence[Event]) -> None: ...


class LoginScorer(Protocol):
    """Optional sink capability: score a login attempt and trust an identifier (Qyzar's anti-ATO).

    A sink that has both methods receives login attempts through them instead of ``send``:
    ``score_login`` delivers the attempt and answers its risk (the reporter waits for it only
    up to a short deadline), ``trust_identifier`` marks an identifier as trusted on the device
    whose session is given. Both raise on failure, as ``send`` does.
    """

    async def score_login(self, event: LoginEvent) -> LoginRisk: ...

    async def trust_identifier(self, *, session_id: str, identifier: str) -> None: ...
