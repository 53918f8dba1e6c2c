"""``rate_limited(rule, key=...)``: the one factory of per-route rate-limit dependencies.

Each call parses its rule and key once (a bad rule fails at import time with
:class:`ConfigurationError`) and returns a new async callable for ``Depends``. Per request it finds
the gate at ``app.state.authgate``, builds the key, asks ``gate.limiter`` and then:

* allowed: adds ``RateLimit-Policy``/``RateLimit`` to the response (through FastAPI's injected
  ``Response``, whose headers FastAPI merges into the final response);
* refused: raises :class:`RateLimitExceeded` carrying ``Retry-After`` and the same headers (a 429),
  or on a WebSocket raises ``WebSocketException(1013)`` ("try again later");
* store down: see :class:`~fastapi_authgate.ratelimit.limiter.RateLimiter` (open by default).

Keys are ``rl:<namespace>:<kind>:<value>``. The namespace is ``name`` when given (routes that pass
the same name share a bucket), else the matched route's methods and path template (so two routes
with the same rule never share a bucket, and ``/users/{id}`` is one bucket per caller, not per id).

``count="failures"`` charges only responses whose status is a client error (4xx): a wrong password,
a bad token, a validation error. Server errors do not charge, so an outage never locks users out,
and successful users are never charged. Before the route runs the rule is checked without
charging and refuses once exhausted; the charge happens when the response status is known, through
:class:`~fastapi_authgate.ratelimit.hooks.ResponseHooksMiddleware` (``AuthGate.install`` adds it).
A dependency with ``yield`` was rejected: it sees raised exceptions but not a returned error
response. Without the middleware every request is charged, and a warning says so once.

``shadow=True`` decides and counts (``limiter.stats.shadow_refusals``, a throttled log line) but
never refuses and sends no rate-limit headers, so a new rule can be tried on live traffic unseen.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol, cast

from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from fastapi_authgate.client_ip import ClientIPResolver
from fastapi_authgate.context import AuthContext, Decision
from fastapi_authgate.errors import (
    ConfigurationError,
    NotAuthenticatedError,
    ProviderError,
    RateLimitExceeded,
)
from fastapi_authgate.protocols import KeyFunc
from fastapi_authgate.ratelimit.hooks import (
    RESPONSE_HOOKS_KEY,
    ResponseHook,
    ResponseHooksMiddleware,
)
from fastapi_authgate.ratelimit.limiter import (
    Rate,
    RateLimiter,
    parse_rule,
    rate_limit_headers,
    retry_after_seconds,
)

__all__ = [
    "CountMode",
    "RateLimitDependency",
    "ResponseHooksMiddleware",
    "is_client_error",
    "rate_limited",
]

logger = logging.getLogger(__name__)

CountMode = Literal["all", "failures"] | Callable[[int], bool]
"""Which requests a rule charges: all, client errors only, or those a status predicate picks."""

RateLimitDependency = Callable[[HTTPConnection, Response], Awaitable[None]]
"""What :func:`rate_limited` returns: an async dependency for ``Depends``."""

WS_TRY_AGAIN_LATER = 1013

_counter = itertools.count(1)
_MAX_ROUTES = 4096


class _Gate(Protocol):
    limiter: RateLimiter
    client_ip: ClientIPResolver

    async def authenticate(self, conn: HTTPConnection) -> AuthContext | None: ...


def is_client_error(status: int) -> bool:
    """The default failure test of ``count="failures"``: 400 <= status < 500."""
    return 400 <= status < 500


def _gate(conn: HTTPConnection) -> _Gate:
    try:
        return cast(_Gate, conn.app.state.authgate)
    except AttributeError:
        raise ConfigurationError(
            "rate_limited() needs an AuthGate on the app: call gate.install(app)"
        ) from None


def _parse_key(key: str | KeyFunc) -> tuple[str, str | None, KeyFunc | None]:
    """``(kind, metadata field, key function)``."""
    if callable(key):
        return "fn", None, key
    if key in ("ip", "user"):
        return key, None, None
    if isinstance(key, str) and key.startswith("metadata:") and key[len("metadata:") :].strip():
        return "metadata", key[len("metadata:") :].strip(), None
    raise ConfigurationError(
        f"rate_limited key {key!r} must be 'ip', 'user', 'metadata:<field>' or a callable"
    )


def _failure_test(count: CountMode) -> Callable[[int], bool] | None:
    if count == "all":
        return None
    if count == "failures":
        return is_client_error
    if callable(count):
        return count
    raise ConfigurationError(
        f"rate_limited count {count!r} must be 'all', 'failures' or a status predicate"
    )


async def _authenticated(gate: _Gate, conn: HTTPConnection) -> AuthContext:
    auth = await gate.authenticate(conn)
    if auth is None:
        raise NotAuthenticatedError()
    return auth


def rate_limited(
    rule: str,
    *,
    key: str | KeyFunc = "ip",
    shadow: bool = False,
    count: CountMode = "all",
    name: str | None = None,
) -> RateLimitDependency:
    """A dependency that enforces ``rule`` per ``key`` on the routes it guards.

    Args:
        rule: ``"10/minute"``, ``"100/hour;5/second"``, ``"10 per minute"``, ``"5/30 seconds"``.
        key: ``"ip"`` (the client IP, see :class:`ClientIPResolver`), ``"user"`` (the verified
            subject; a request without a credential gets a 401), ``"metadata:<field>"`` (that field
            of ``AuthContext.user.metadata``, else of ``AuthContext.claims``, else the subject), or
            a callable ``(conn, auth_or_none) -> str`` (sync or async).
        shadow: decide and count, but never refuse (see the module docstring).
        count: ``"all"``, ``"failures"`` (client-error responses only) or a status predicate.
        name: a namespace shared by every route that uses it, instead of one per route.

    Raises:
        ConfigurationError: the rule, key or count does not parse (when called, not per request).
    """
    rates = parse_rule(rule)
    kind, field, key_func = _parse_key(key)
    failure_test = _failure_test(count)
    kind_segment = f"{kind}:{field}:" if field is not None else f"{kind}:"
    fixed_base = None if name is None else f"rl:{name}:"
    fallback_base = f"rl:{rule}#{next(_counter)}:"
    bases: dict[tuple[int, str], tuple[object, str]] = {}  # routes may be unhashable
    warned_no_hooks = False

    def base_of(scope: Scope) -> str:
        if fixed_base is not None:
            return fixed_base
        route = scope.get("route")
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return fallback_base
        root = scope.get("root_path", "")
        cached = bases.get((id(route), root))
        if cached is not None and cached[0] is route:
            return cached[1]
        methods = getattr(route, "methods", None)
        verbs = ",".join(sorted(methods)) + " " if methods else ""
        base = f"rl:{verbs}{root}{path}:"
        if len(bases) < _MAX_ROUTES:
            bases[(id(route), root)] = (route, base)
        return base

    async def key_of(gate: _Gate, conn: HTTPConnection) -> str:
        if kind == "ip":
            return kind_segment + gate.client_ip.key(conn)
        if kind == "user":
            return kind_segment + (await _authenticated(gate, conn)).subject
        if kind == "metadata":
            auth = await _authenticated(gate, conn)
            metadata = auth.user.metadata if auth.user is not None else {}
            value = metadata.get(cast(str, field), auth.claims.get(cast(str, field)))
            if value is None:
                return "user:" + auth.subject
            return kind_segment + str(value)
        made = cast(KeyFunc, key_func)(conn, await gate.authenticate(conn))
        value = await made if inspect.isawaitable(made) else made
        return kind_segment + str(value)

    async def rate_limit(request: HTTPConnection, response: Response) -> None:
        nonlocal warned_no_hooks
        gate = _gate(request)
        limiter = gate.limiter
        scope = request.scope
        base = base_of(scope)
        full_key = base + await key_of(gate, request)
        is_http = scope["type"] == "http"
        deferred = failure_test is not None and is_http
        decisions = await limiter.check(full_key, rates, cost=0 if deferred else 1)
        if not decisions:
            return  # the store failed open
        allowed = decisions[0].allowed if len(decisions) == 1 else _all_allowed(decisions)
        if not allowed:
            limiter.record_refusal(f"{rule!r} on {base[3:-1]}", shadow=shadow)
            if not shadow:
                if not is_http:
                    raise WebSocketException(WS_TRY_AGAIN_LATER, "Too many requests")
                headers = rate_limit_headers(decisions)
                raise RateLimitExceeded(retry_after=retry_after_seconds(decisions), headers=headers)
        elif is_http and not shadow:
            raw = response.headers.raw
            for header, value in rate_limit_headers(decisions).items():
                raw.append((header.lower().encode("latin-1"), value.encode("latin-1")))
        if deferred:
            hooks = cast("list[ResponseHook] | None", scope.get(RESPONSE_HOOKS_KEY))
            if hooks is None:
                if not warned_no_hooks:
                    warned_no_hooks = True
                    logger.warning(
                        "rate_limited(%r, count=failures) charges every request: "
                        "ResponseHooksMiddleware is not installed (AuthGate.install adds it)",
                        rule,
                    )
                await limiter.check(full_key, rates)
                return
            hooks.append(_charge_on_failure(limiter, full_key, rates, failure_test))

    rate_limit.__qualname__ = rate_limit.__name__ = f"rate_limited({rule!r})"
    return rate_limit


def _all_allowed(decisions: list[Decision]) -> bool:
    return all(decision.allowed for decision in decisions)


def _charge_on_failure(
    limiter: RateLimiter,
    full_key: str,
    rates: Sequence[Rate],
    failure_test: Callable[[int], bool] | None,
) -> ResponseHook:
    async def charge(status: int) -> None:
        if failure_test is not None and failure_test(status):
            with contextlib.suppress(ProviderError):  # already counted and logged by the limiter
                await limiter.check(full_key, rates)

    return charge
