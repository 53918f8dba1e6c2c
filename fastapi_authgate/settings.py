"""``AuthGateSettings``: every ``AUTHGATE_*`` environment variable, as data only.

Lists accept either a comma list (``RS256,ES256``) or a JSON list (``["RS256","ES256"]``). Secrets
are ``SecretStr`` so they never show in a ``repr`` or a log. Values are validated here when they can
be judged alone; :class:`~fastapi_authgate.gate.AuthGate` checks how they fit together and raises
``ConfigurationError`` naming the variable.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "AuthGateSettings",
    "InaiSettings",
    "QyzarSettings",
    "ReportingSettings",
    "TiunSettings",
    "ToriiSettings",
    "MAX_LEEWAY_SECONDS",
]

MAX_LEEWAY_SECONDS = 300
"""Upper bound on clock-skew leeway: more would let expired tokens live on for minutes."""

ProviderName = Literal["dev", "jwks", "qyzar", "torii", "tiun", "inai"]


def split_list(value: Any) -> Any:
    """Accept a JSON list or a comma list for list-valued variables."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class QyzarSettings(BaseModel):
    """``AUTHGATE_QYZAR__*``."""

    api_url: str | None = None
    project_id: str | None = None
    project_secret: SecretStr | None = None
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    session_cache_seconds: float = Field(default=30, ge=0, le=3600)


class ToriiSettings(BaseModel):
    """``AUTHGATE_TORII__*``."""

    issuer: str | None = None
    secret_key: SecretStr | None = None
    api_url: str | None = None
    audience: str | None = None
    environment_id: str | None = None


class TiunSettings(BaseModel):
    """``AUTHGATE_TIUN__*``."""

    api_key: SecretStr | None = None
    environment: Literal["live", "sandbox"] = "sandbox"
    api_url: str | None = None
    cache_seconds: float = Field(default=30, ge=0, le=300)
    timeout_seconds: float = Field(default=2, gt=0, le=30)


class InaiSettings(BaseModel):
    """``AUTHGATE_INAI__*``."""

    publishable_key: str | None = None
    api_url: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None


class ReportingSettings(BaseModel):
    """``AUTHGATE_REPORTING__*``: background reporting of requests and login attempts.

    ``sink`` unset (the default) switches reporting off entirely: no middleware, no queue, no
    worker. ``log`` writes one JSON object per event on the ``fastapi_authgate.reporting``
    logger; ``qyzar`` sends to Qyzar with the ``AUTHGATE_QYZAR__*`` settings.
    """

    sink: Literal["log", "qyzar"] | None = None
    queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    flush_seconds: float = Field(default=1.0, gt=0, le=3600)
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    exclude_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    shutdown_deadline_seconds: float = Field(default=5.0, ge=0, le=600)
    login_score_deadline_seconds: float = Field(default=0.3, gt=0, le=10)

    _split_lists = field_validator("exclude_paths", mode="before")(split_list)

    @field_validator("sink", mode="before")
    @classmethod
    def _blank_is_off(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip().lower() if isinstance(value, str) else value


class AuthGateSettings(BaseSettings):
    """Settings read from ``AUTHGATE_*`` variables (nested with ``__``)."""

    model_config = SettingsConfigDict(
        env_prefix="AUTHGATE_",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
    )

    provider: ProviderName = "dev"
    jwks_url: str | None = None
    issuer: str | None = None
    audience: Annotated[list[str], NoDecode] = Field(default_factory=list)
    algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_seconds: float = Field(default=30, ge=0, le=MAX_LEEWAY_SECONDS)
    realm: str = "api"
    session_cookie: str = "authgate_session"
    max_token_bytes: int = Field(default=8192, ge=256, le=65536)
    token_cache_size: int = Field(default=10_000, ge=0)
    jwks_cache_seconds: float = Field(default=300, ge=0)
    jwks_refetch_cooldown_seconds: float = Field(default=30, ge=0)
    jwks_timeout_seconds: float = Field(default=5, gt=0, le=60)
    token_type: str | None = None
    unsafe_any_issuer: bool = False
    unsafe_any_audience: bool = False

    redis_url: SecretStr | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_failure_mode: Literal["local", "open", "closed"] = "local"
    rate_limit_store_timeout_seconds: float = Field(default=0.5, gt=0, le=10)

    qyzar: QyzarSettings = Field(default_factory=QyzarSettings)
    torii: ToriiSettings = Field(default_factory=ToriiSettings)
    tiun: TiunSettings = Field(default_factory=TiunSettings)
    inai: InaiSettings = Field(default_factory=InaiSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)

    _split_lists = field_validator(
        "audience", "algorithms", "trusted_proxies", "allowed_origins", mode="before"
    )(split_list)

    @field_validator("realm")
    @classmethod
    def _realm_is_quotable(cls, value: str) -> str:
        if not value or any(ch in value for ch in '"\\\r\n') or not value.isprintable():
            raise ValueError("realm must be printable text without quotes or backslashes")
        return value
