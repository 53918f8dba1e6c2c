"""What :class:`~fastapi_authgate.providers.qyzar_client.QyzarClient` returns, and its error.

Results are frozen dataclasses with read-only mappings, parsed tolerantly from Qyzar's JSON
(``providers/WIRE.md``): unknown fields are ignored, optional ones may be missing, and a required
field of the wrong type makes the whole answer garbage (a :class:`QyzarError`, so a 503), never a
half-filled result. Timestamps become aware ``datetime`` objects in UTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi_authgate.context import freeze_mapping
from fastapi_authgate.errors import ProviderError

__all__ = [
    "ClientTokenVerification",
    "ExtraMetadata",
    "LoginAttempt",
    "LoginHistory",
    "QyzarError",
    "QyzarSecretError",
    "RateLimitCheck",
    "RequestEvent",
    "RequestLogReceipt",
    "SessionVerification",
    "TrustedIdentifiers",
    "parse_time",
]


class QyzarError(ProviderError):
    """Qyzar could not answer, or answered with an error.

    ``status`` is Qyzar's HTTP status (``None`` when there was no usable answer: timeout,
    connection failure, redirect, garbage), ``code`` the ``error`` member of its JSON body, and
    ``body`` the decoded body (``None`` when it was not JSON). A 503 on the wire, with
    ``Retry-After`` (Qyzar's own on a 429). The message never holds the project secret.
    """

    def __init__(
        self,
        description: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Any = None,
        retry_after: float = 5,
    ) -> None:
        super().__init__(description or "Qyzar is unavailable", retry_after=retry_after)
        self.status = status
        self.code = code
        self.body = body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r})"


class QyzarSecretError(QyzarError):
    """Qyzar refused our project secret or project id: our configuration, never the user's."""


def parse_time(value: Any) -> datetime | None:
    """A UNIX time (number) or an ISO 8601 string as an aware UTC datetime; else ``None``."""
    if type(value) in (int, float) and math.isfinite(value) and 0 <= value < 253_402_300_800:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not an object")
    return value


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{name} is not a string")


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} is not a list of strings")
    return tuple(value)


def _number(value: Any, name: str) -> float:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} is not a number")


def _body(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class SessionVerification:
    """Answer of session verify; ``reason`` (``expired``, ``revoked``, ``unknown``) if invalid."""

    valid: bool
    session_id: str | None = None
    expires_at: datetime | None = None
    identifier: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))

    @classmethod
    def from_wire(cls, data: Any) -> SessionVerification:
        body = _body(data)
        valid = body.get("valid")
        if valid is False:
            return cls(valid=False, reason=_optional_str(body.get("reason"), "reason") or "unknown")
        if valid is not True:
            raise ValueError("valid is not a boolean")
        session_id = body.get("sessionId")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("sessionId is missing")
        expires_at = parse_time(body.get("expiresAt"))
        if body.get("expiresAt") is not None and expires_at is None:
            raise ValueError("expiresAt is not a time")
        return cls(
            valid=True,
            session_id=session_id,
            expires_at=expires_at,
            identifier=_optional_str(body.get("identifier"), "identifier") or None,
            metadata=_object(body.get("metadata"), "metadata"),
        )


@dataclass(frozen=True, slots=True)
class ClientTokenVerification:
    """Answer of online client-token verify: public metadata only, never risk scores."""

    valid: bool
    session_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))

    @classmethod
    def from_wire(cls, data: Any) -> ClientTokenVerification:
        body = _body(data)
        valid = body.get("valid")
        if valid is False:
            return cls(valid=False)
        if valid is not True:
            raise ValueError("valid is not a boolean")
        return cls(
            valid=True,
            session_id=_optional_str(body.get("sessionId"), "sessionId") or None,
            metadata=_object(body.get("metadata"), "metadata"),
        )


@dataclass(frozen=True, slots=True)
class ExtraMetadata:
    """A session's extra metadata (email, phone, custom keys), whole."""

    session_id: str
    metadata: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))

    @classmethod
    def from_wire(cls, data: Any, session_id: str) -> ExtraMetadata:
        body = _body(data)
        found = _optional_str(body.get("sessionId"), "sessionId") or session_id
        return cls(session_id=found, metadata=_object(body.get("metadata"), "metadata"))


@dataclass(frozen=True, slots=True)
class RateLimitCheck:
    """Answer of the rate-limit check. ``retry_after_seconds`` is set when not ``allowed``."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after_seconds: float | None
    bucket: str

    @classmethod
    def from_wire(cls, data: Any) -> RateLimitCheck:
        body = _body(data)
        allowed = body.get("allowed")
        if type(allowed) is not bool:
            raise ValueError("allowed is not a boolean")
        retry = body.get("retryAfterSeconds")
        retry_after = None if retry is None else _number(retry, "retryAfterSeconds")
        reset = _number(body.get("resetSeconds", 0), "resetSeconds")
        if not allowed and retry_after is None:
            retry_after = reset if reset > 0 else 1.0
        return cls(
            allowed=allowed,
            limit=int(_number(body.get("limit"), "limit")),
            remaining=max(0, int(_number(body.get("remaining"), "remaining"))),
            reset_seconds=max(0.0, reset),
            retry_after_seconds=retry_after,
            bucket=_optional_str(body.get("bucket"), "bucket") or "ip",
        )


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One API request for Qyzar's request logs (``POST /projects/client/request-logs``)."""

    method: str
    path: str
    status: int
    duration_ms: float
    at: float
    route: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    session_id: str | None = None
    subject: str | None = None
    request_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "route": self.route if self.route is not None else self.path,
            "status": self.status,
            "durationMs": self.duration_ms,
            "ip": self.ip,
            "userAgent": self.user_agent,
            "at": self.at,
        }
        for name, value in (
            ("sessionId", self.session_id),
            ("subject", self.subject),
            ("requestId", self.request_id),
        ):
            if value is not None:
                wire[name] = value
        return wire


@dataclass(frozen=True, slots=True)
class RequestLogReceipt:
    """Answer of a request-log upload: how many events Qyzar accepted."""

    accepted: int

    @classmethod
    def from_wire(cls, data: Any) -> RequestLogReceipt:
        return cls(accepted=int(_number(_body(data).get("accepted"), "accepted")))


@dataclass(frozen=True, slots=True)
class LoginHistory:
    """What Qyzar knew about the device before this login attempt."""

    identifiers: Sequence[str] = ()
    trusted_identifiers: Sequence[str] = ()
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """Answer of a login-attempt log: ``score`` 0 to 100, higher is riskier."""

    score: int
    last_login_at: datetime | None
    prior: LoginHistory

    @classmethod
    def from_wire(cls, data: Any) -> LoginAttempt:
        body = _body(data)
        score = int(_number(body.get("score"), "score"))
        if not 0 <= score <= 100:
            raise ValueError("score is outside 0..100")
        prior = _object(body.get("prior"), "prior")
        return cls(
            score=score,
            last_login_at=parse_time(body.get("lastLoginAt")),
            prior=LoginHistory(
                identifiers=_strings(prior.get("identifiers"), "prior.identifiers"),
                trusted_identifiers=_strings(
                    prior.get("trustedIdentifiers"), "prior.trustedIdentifiers"
                ),
                attempts=int(_number(prior.get("attempts", 0), "prior.attempts")),
            ),
        )


@dataclass(frozen=True, slots=True)
class TrustedIdentifiers:
    """Answer of trusting an identifier: the device's trusted identifiers now."""

    trusted_identifiers: Sequence[str]

    @classmethod
    def from_wire(cls, data: Any) -> TrustedIdentifiers:
        body = _body(data)
        return cls(
            trusted_identifiers=_strings(body.get("trustedIdentifiers"), "trustedIdentifiers")
        )
