"""fastapi_authgate: identity checks, rate limits and activity reporting in front of FastAPI routes.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are internal.
Optional extras (``redis``) are imported lazily by the modules that need them, never from here.
"""

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
    CrossOriginError,
    NotAuthenticatedError,
    ProviderError,
    ProviderResponseError,
    RateLimitExceeded,
)
from fastapi_authgate.gate import AuthGate
from fastapi_authgate.middleware import AuthGateMiddleware
from fastapi_authgate.protocols import Clock, EventSink, KeyFunc, RateLimitStore, Verifier
from fastapi_authgate.reporting import (
    LoginAttempts,
    LoginRisk,
    Reporter,
    login_attempts,
    record_login_attempt,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.chain import ChainVerifier
from fastapi_authgate.verifiers.jwks import JWKSVerifier

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
    "CrossOriginError",
    "Decision",
    "EventSink",
    "JWKSVerifier",
    "KeyFunc",
    "LoginAttempts",
    "LoginRisk",
    "NotAuthenticatedError",
    "ProviderError",
    "ProviderResponseError",
    "RateLimitExceeded",
    "RateLimitStore",
    "Reporter",
    "User",
    "Verifier",
    "__version__",
    "login_attempts",
    "optional_user",
    "rate_limited",
    "record_login_attempt",
    "require_session",
    "require_user",
]
