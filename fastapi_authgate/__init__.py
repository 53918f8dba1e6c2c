"""fastapi_authgate: identity checks, rate limits and activity reporting in front of FastAPI routes.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are internal.
Optional extras (``redis``) are imported lazily by the modules that need them, never from here.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi_authgate.context import AuthContext, Credentials, Decision, User
    from fastapi_authgate.dependencies import (
        AuthDependency,
        optional_user,
        rate_limited,
        require_session,
        require_user,
    )
    from fastapi_authgate.errors import (
        AuthenticationError,
        AuthGateError,
        AuthorizationError,
        ConfigurationError,
        NotAuthenticatedError,
        ProviderError,
        RateLimitExceeded,
    )
    from fastapi_authgate.gate import AuthGate
    from fastapi_authgate.middleware import AuthGateMiddleware
    from fastapi_authgate.protocols import Clock, EventSink, KeyFunc, RateLimitStore, Verifier
    from fastapi_authgate.settings import AuthGateSettings
    from fastapi_authgate.verifiers.chain import ChainVerifier
    from fastapi_authgate.verifiers.jwks import JWKSVerifier


_HOMES = {
    "AuthContext": "context",
    "Credentials": "context",
    "Decision": "context",
    "User": "context",
    "AuthDependency": "dependencies",
    "optional_user": "dependencies",
    "rate_limited": "dependencies",
    "require_session": "dependencies",
    "require_user": "dependencies",
    "AuthenticationError": "errors",
    "AuthGateError": "errors",
    "AuthorizationError": "errors",
    "ConfigurationError": "errors",
    "NotAuthenticatedError": "errors",
    "ProviderError": "errors",
    "RateLimitExceeded": "errors",
    "AuthGate": "gate",
    "AuthGateMiddleware": "middleware",
    "Clock": "protocols",
    "EventSink": "protocols",
    "KeyFunc": "protocols",
    "RateLimitStore": "protocols",
    "Verifier": "protocols",
    "AuthGateSettings": "settings",
    "ChainVerifier": "verifiers.chain",
    "JWKSVerifier": "verifiers.jwks",
}


def __getattr__(name: str) -> object:
    import importlib

    if name in _HOMES:
        return getattr(importlib.import_module(f"fastapi_authgate.{_HOMES[name]}"), name)
    raise AttributeError(name)


__version__ = "0.1.0"

__all__ = [
    "AuthContext",
    "AuthDependency",
    "AuthGate",
    "AuthGateError",
    "AuthGateMiddleware",
    "AuthGateSettings",
    "AuthenticationError",
    "AuthorizationError",
    "ChainVerifier",
    "Clock",
    "ConfigurationError",
    "Credentials",
    "Decision",
    "EventSink",
    "JWKSVerifier",
    "KeyFunc",
    "NotAuthenticatedError",
    "ProviderError",
    "RateLimitExceeded",
    "RateLimitStore",
    "User",
    "Verifier",
    "__version__",
    "optional_user",
    "rate_limited",
    "require_session",
    "require_user",
]
