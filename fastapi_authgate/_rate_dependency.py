"""``rate_limited(rule, key=...)``: the one factory of per-route rate-limit dependencies.

Each call parses its rule and key once (a bad rule fails at import time with
:class:`ConfigurationError`) and returns a new async callable for ``Depends``. Per request it
finds the gate (:func:`~fastapi_authgate.gate.installed_gate`), builds the key, asks
``gate.limiter`` and then:

* allowed: adds ``RateLimit-Policy``/``RateLimit`` to the response (through FastAPI's injected
  ``Response``, whose headers FastAPI merges into the final response);
* refused: raises :class:`RateLimitExceeded` carrying ``Retry-After`` and the same headers (a 429),
  or on a WebSocket raises ``WebSocketException(1013)`` ("try again later");
* store down: see :class:`~fastapi_authgate.ratelimit.limiter.RateLimiter` (by default every rule
  keeps being enforced in process until the store answers again).

Keys are ``rl:<namespace>:<kind>:<value>``. The namespace is ``name`` when given (routes that pass
the same name share a bucket), else the matched route's methods and full path template, mounts
included (so two routes with the same rule never share a bucket, ``/users/{id}`` is one bucket per
caller, not per id, and a mount at ``/t/{tenant}`` is one bucket per caller, not per tenant value:
see :func:`route_template`). ``key="user"`` values are ``<provider>:<issuer>:<subject>``, so the
same subject at two issuers is two callers.

``count="failures"`` keeps only the charges of responses whose status is a client error (4xx): a
wrong password, a bad token, a validation error. Server errors do not count, so an outage never
locks users out, and successful users are never charged. Every request is charged *before* the
route runs (and refused once the rule is exhausted), and the charge is given back when the
response status, known through
:class:`~fastapi_authgate.ratelimit.hooks.ResponseHooksMiddleware` (``AuthGate.install`` adds it),
is not a failure. Charging first is what makes the rule hold under a race: checking for free and
charging afterwards let twenty parallel password guesses against ``5/minute`` all be evaluated;
now at most five are ever in flight. A request whose response never starts (the client went
away) keeps its charge. A dependency with ``yield`` was rejected: it sees raised exceptions but
not a returned error response. Without the middleware every charge is kept, and a warning says
so once.

``shadow=True`` decides and counts (``limiter.stats.shadow_refusals``, a throttled log line) but
never refuses and sends no rate-limit headers, so a new rule can be tried on live traffic unseen.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, cast

from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from fastapi_authgate.client_ip import ClientIPResolver
from fastapi_authgate.context import AuthContext, Decision
from fastapi_authgate.errors import (
    AuthGateError,
    ConfigurationError,
    NotAuthenticatedError,
    ProviderError,
    RateLimitExceeded,
)
from fastapi_authgate.gate import guard_gate, installed_gate
from fastapi_authgate.protocols import KeyFunc
from fastapi_authgate.ratelimit.headers import (
    HeaderTemplate,
    rate_limit_headers,
    retry_after_seconds,
)
from fastapi_authgate.ratelimit.hooks import (
    RESPONSE_HOOKS_KEY,
    ResponseHook,
    ResponseHooksMiddleware,
)
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.rules import Rate, parse_rule
from fastapi_authgate.responses import for_scope

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

_Namespace = tuple[str, str, str]
"""``(key base, key base with the key kind, label for logs)`` of one route, built once."""


class _Gate(Protocol):
    limiter: RateLimiter
    client_ip: ClientIPResolver

    async def authenticate(self, conn: HTTPConnection) -> AuthContext | None: ...


def is_client_error(status: int) -> bool:
    """The default failure test of ``count="failures"``: 400 <= status < 500."""
    return 400 <= status < 500


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


_MAX_MOUNT_DEPTH = 8


def route_template(router: object, route: object, path: str) -> str:
    """The full path template of ``route``: its mounts' templates joined with its own.

    Bucket names are built from templates only, never from the concrete ``root_path``: under
    ``outer.mount("/t/{tenant}", sub)`` the root path carries the tenant's *value*, and a name
    built from it would hand every tenant value (any string a caller picks) a fresh bucket. The
    mount templates are found by walking the routes of the outermost router (Starlette puts it
    at ``scope["router"]``); the walk runs once per route, as the result is cached by the caller.
    A route that cannot be found there (a custom router) is named by its own template alone.
    """
    found = _find_template(router, route, 0)
    return path if found is None else found


def _find_template(router: object, route: object, depth: int) -> str | None:
    if depth > _MAX_MOUNT_DEPTH:
        return None
    routes = getattr(router, "routes", None)
    if not isinstance(routes, list):
        return None
    for candidate in routes:
        if candidate is route:
            return cast(str, getattr(route, "path", ""))
    for candidate in routes:
        if candidate is route or not isinstance(getattr(candidate, "routes", None), list):
            continue
        inner = _find_template(candidate, route, depth + 1)
        if inner is not None:
            prefix = getattr(candidate, "path", "")
            return (prefix if isinstance(prefix, str) else "") + inner
    return None


def _escape(text: str) -> str:
    if "%" in text or ":" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


_issuers: dict[tuple[str, object], str] = {}


def _issuer_of(auth: AuthContext) -> str:
    """``<provider>:<issuer>:`` of a verified identity, ``:`` in either escaped (injective)."""
    issuer = auth.claims.get("iss")
    cache_key = (auth.provider, issuer if isinstance(issuer, str) else None)
    text = _issuers.get(cache_key)
    if text is None:
        text = f"{_escape(auth.provider)}:{_escape(cache_key[1] or '')}:"
        if len(_issuers) < _MAX_ROUTES:
            _issuers[cache_key] = text
    return text


def _identity(auth: AuthContext) -> str:
    """The bucket value of ``key="user"``: (provider, issuer, subject), never the subject alone.

    Two issuers may both have an ``alice``; keyed on the subject alone, a partner issuer's
    ``alice`` could exhaust (lock out) the main issuer's ``alice``.
    """
    return _issuer_of(auth) + auth.subject


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
    headers_of = HeaderTemplate(rates)
    by_ip = kind == "ip"
    kind_segment = f"{kind}:{field}:" if field is not None else f"{kind}:"

    def namespace(text: str) -> _Namespace:
        base = f"rl:{text}:"
        return base, base + kind_segment, f"{rule!r} on {text}"

    fixed = None if name is None else namespace(name)
    fallback = namespace(f"{rule}#{next(_counter)}")
    bases: dict[int, tuple[object, _Namespace]] = {}  # routes may be unhashable
    last: tuple[object, _Namespace] | None = None  # most dependencies guard one route
    warned_no_hooks = False

    def namespace_of(scope: Scope) -> _Namespace:
        nonlocal last
        route = scope.get("route")
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return fallback
        cached = bases.get(id(route))
        if cached is not None and cached[0] is route:
            found = cached[1]
        else:
            methods = getattr(route, "methods", None)
            verbs = ",".join(sorted(methods)) + " " if methods else ""
            found = namespace(f"{verbs}{route_template(scope.get('router'), route, path)}")
            if len(bases) < _MAX_ROUTES:
                bases[id(route)] = (route, found)
        last = (route, found)
        return found

    async def key_of(gate: _Gate, conn: HTTPConnection) -> str:
        # the identity the route's guard admits (AuthDependency(gate=...)), not the installed gate's
        gate = cast(_Gate, guard_gate(conn.scope, cast(Any, gate)))
        if kind == "user":
            auth = await _authenticated(gate, conn)
            return kind_segment + _identity(auth)
        if kind == "metadata":
            auth = await _authenticated(gate, conn)
            metadata = auth.user.metadata if auth.user is not None else {}
            value = metadata.get(cast(str, field), auth.claims.get(cast(str, field)))
            if value is None:
                return "user:" + _identity(auth)
            return kind_segment + _issuer_of(auth) + str(value)
        made = cast(KeyFunc, key_func)(conn, await gate.authenticate(conn))
        value = await made if inspect.isawaitable(made) else made
        return kind_segment + str(value)

    async def rate_limit(request: HTTPConnection, response: Response) -> None:
        nonlocal warned_no_hooks
        scope = request.scope
        gate = cast("_Gate | None", installed_gate(scope))
        if gate is None:
            logger.error(
                "rate_limited(%r) found no AuthGate on the app (call gate.install(app)); "
                "answering 503",
                rule,
            )
            if scope["type"] != "http":
                raise WebSocketException(
                    WS_TRY_AGAIN_LATER, "Rate limiting is not configured"
                ) from None
            raise HTTPException(
                503, "Rate limiting is not configured", headers={"Retry-After": "5"}
            )
        try:
            limiter = gate.limiter
            seen = last
            if fixed is not None:
                base, ip_base, label = fixed
            elif seen is not None and seen[0] is scope.get("route"):
                base, ip_base, label = seen[1]
            else:
                base, ip_base, label = namespace_of(scope)
            if by_ip:
                full_key = ip_base + gate.client_ip.key(request)
            else:
                full_key = base + await key_of(gate, request)
            is_http = scope["type"] == "http"
            if limiter.in_process:  # the memory store: no deadline, no coroutine
                decisions = limiter.check_now(full_key, rates)
            else:
                decisions = await limiter.check(full_key, rates, shadow=shadow)
            if not decisions:
                return  # the store failed open
            allowed = decisions[0].allowed if len(decisions) == 1 else _all_allowed(decisions)
            if not allowed:
                limiter.record_refusal(label, shadow=shadow)
                if not shadow:
                    if not is_http:
                        raise WebSocketException(WS_TRY_AGAIN_LATER, "Too many requests")
                    headers = rate_limit_headers(decisions)
                    raise RateLimitExceeded(
                        retry_after=retry_after_seconds(decisions), headers=headers
                    )
            elif is_http and not shadow:
                response.raw_headers.extend(headers_of.allowed(decisions))  # no MutableHeaders view
            if failure_test is not None and is_http:
                hooks = cast("list[ResponseHook] | None", scope.get(RESPONSE_HOOKS_KEY))
                if hooks is None:
                    if not warned_no_hooks:
                        warned_no_hooks = True
                        logger.warning(
                            "rate_limited(%r, count=failures) charges every request: "
                            "ResponseHooksMiddleware is not installed (AuthGate.install adds it)",
                            rule,
                        )
                    return
                hooks.append(_refund_unless_failure(limiter, full_key, rates, failure_test))
        except AuthGateError as exc:  # a mounted sub-app may have no handler for ours: no 500
            raise for_scope(exc, scope, realm=getattr(gate, "realm", "api")) from None

    rate_limit.__qualname__ = rate_limit.__name__ = f"rate_limited({rule!r})"
    return rate_limit


def _all_allowed(decisions: list[Decision]) -> bool:
    return all(decision.allowed for decision in decisions)


def _refund_unless_failure(
    limiter: RateLimiter,
    full_key: str,
    rates: Sequence[Rate],
    failure_test: Callable[[int], bool],
) -> ResponseHook:
    async def refund(status: int) -> None:
        if not failure_test(status):
            with contextlib.suppress(ProviderError):  # already counted and logged by the limiter
                await limiter.check(full_key, rates, cost=-1)

    return refund
