"""Validation of the registered JWT claims (RFC 7519 section 4.1) against a fixed policy.

Runs only on claims whose signature has been verified, and checks ``exp``, ``nbf``, ``iat``,
``iss``, ``aud`` and ``sub`` together so no caller can forget one (the two-step
decode-then-validate API of some libraries makes that easy). Time comes in as ``now`` (from the
injected clock, so tests never sleep) and the clock-skew leeway is bounded by
:data:`~fastapi_authgate.settings.MAX_LEEWAY_SECONDS` when the policy is built.

Types are checked exactly: a boolean is not a timestamp, a number outside the range a
``datetime`` can hold is refused rather than overflowing later, and ``aud`` must be a string or
a non-empty list of strings. Every failure is an
:class:`~fastapi_authgate.errors.AuthenticationError` with a fixed description.

Pure standard library: claims are JSON values, so python-jose is not needed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.settings import MAX_LEEWAY_SECONDS

__all__ = ["ClaimsPolicy", "validate_claims"]

# 9999-12-31T23:59:59Z: later instants cannot become a datetime, so they are refused outright.
_MAX_TIMESTAMP: Final = 253_402_300_799


@dataclass(frozen=True, slots=True)
class ClaimsPolicy:
    """What a verified token's claims must satisfy.

    ``issuer`` ``None`` skips the ``iss`` check. With an empty ``audiences`` a token carrying
    ``aud`` is refused: it was minted for some API, and this one cannot tell that it is the one
    (an ID token, or another API's access token). ``any_audience`` lifts that refusal for the rare
    deployment that must accept tokens whatever their ``aud`` (a present ``aud`` must still be
    well-formed). ``leeway`` is the clock skew in seconds allowed on ``exp``/``nbf``/``iat``.

    Raises:
        ConfigurationError: negative, non-finite or too large (> 300 s) leeway.
    """

    issuer: str | None
    audiences: frozenset[str]
    leeway: float = 30
    require_sub: bool = True
    any_audience: bool = False

    def __post_init__(self) -> None:
        leeway = self.leeway
        if (
            isinstance(leeway, bool)
            or not isinstance(leeway, int | float)
            or not math.isfinite(leeway)
            or not 0 <= leeway <= MAX_LEEWAY_SECONDS
        ):
            raise ConfigurationError(
                f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds "
                "(AUTHGATE_LEEWAY_SECONDS)"
            )


def _timestamp(value: Any) -> float | None:
    """The value as a finite number within datetime's range, else ``None`` (bools excluded)."""
    kind = type(value)
    if (kind is int or (kind is float and math.isfinite(value))) and abs(value) <= _MAX_TIMESTAMP:
        return float(value)
    return None


def validate_claims(claims: Mapping[str, Any], policy: ClaimsPolicy, *, now: float) -> None:
    """Check the registered claims of a token whose signature was verified.

    Raises:
        AuthenticationError: ``exp`` missing or not a number, expired, ``nbf`` or ``iat`` in the
            future (beyond the leeway), ``iss`` not the issuer, ``aud`` not ours or malformed,
            ``sub`` missing or not a non-empty string.
    """
    leeway = policy.leeway
    if "exp" not in claims:
        raise AuthenticationError("The token has no expiry")
    exp = _timestamp(claims["exp"])
    if exp is None:
        raise AuthenticationError("The token expiry is invalid")
    if now - leeway >= exp:
        raise AuthenticationError("The token has expired")
    if "nbf" in claims:
        nbf = _timestamp(claims["nbf"])
        if nbf is None:
            raise AuthenticationError("The token not-before time is invalid")
        if nbf > now + leeway:
            raise AuthenticationError("The token is not valid yet")
    if "iat" in claims:
        iat = _timestamp(claims["iat"])
        if iat is None:
            raise AuthenticationError("The token issue time is invalid")
        if iat > now + leeway:
            raise AuthenticationError("The token was issued in the future")
    if policy.issuer is not None:
        iss = claims.get("iss")
        if type(iss) is not str or iss != policy.issuer:
            raise AuthenticationError("The token issuer is not accepted")
    if "aud" in claims or policy.audiences:
        _check_audience(claims.get("aud"), policy.audiences, policy.any_audience)
    sub = claims.get("sub")
    if (policy.require_sub or "sub" in claims) and (type(sub) is not str or not sub):
        raise AuthenticationError("The token subject is missing or invalid")


def _check_audience(aud: Any, audiences: frozenset[str], any_audience: bool) -> None:
    if type(aud) is str:
        granted: frozenset[str] | tuple[str] = (aud,)
    elif type(aud) is list and aud and all(type(item) is str for item in aud):
        granted = frozenset(aud)
    else:
        raise AuthenticationError("The token audience is missing or invalid")
    if audiences and audiences.isdisjoint(granted):
        raise AuthenticationError("The token is not meant for this audience")
    if not audiences and not any_audience:
        raise AuthenticationError("The token is meant for an audience this API does not accept")
