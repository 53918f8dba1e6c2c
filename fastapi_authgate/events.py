"""Activity events handed to reporting sinks, and the risk verdict of a login attempt.

Events are named tuples: the capture middleware builds one per reported request, and a tuple is
built in a fraction of the time a frozen dataclass takes. They hold only what an operator needs
to see traffic: never a token, a cookie value, a password, a query string or a request body. The
path is the request path without its query string; ``route`` is the route template
(``/items/{item_id}``) when the request reached a route.

``as_dict`` gives the one JSON shape every sink that writes JSON uses (snake_case keys, a
``"event"`` key naming the kind); a sink with its own wire format (Qyzar) maps the fields itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = ["Event", "LoginEvent", "LoginRisk", "RequestEvent", "RiskStatus"]


class RequestEvent(NamedTuple):
    """One HTTP request the gate saw, refused ones included.

    ``at`` is the UNIX time the request arrived, ``duration_ms`` the time until the app returned
    (the response fully sent). ``subject`` and ``session_id`` are set when the request carried a
    verified identity. ``ip`` follows the gate's trusted-proxy rules.
    """

    at: float
    method: str
    path: str
    route: str | None
    status: int
    duration_ms: float
    ip: str
    user_agent: str | None = None
    subject: str | None = None
    session_id: str | None = None
    request_id: str | None = None

    @property
    def kind(self) -> Literal["request"]:
        return "request"

    def as_dict(self) -> dict[str, object]:
        """The event as a JSON-ready mapping, ``{"event": "request", ...}``."""
        data: dict[str, object] = {"event": "request", **self._asdict()}
        data["duration_ms"] = round(self.duration_ms, 3)
        return data


class LoginEvent(NamedTuple):
    """One attempt to sign in at the app's own login route.

    ``identifier`` is what the user typed to name themselves (user name, e-mail), never the
    password. ``success`` is ``None`` when the attempt is reported before its outcome is known
    (to ask for a risk score first).
    """

    at: float
    identifier: str
    success: bool | None
    ip: str
    user_agent: str | None = None
    session_id: str | None = None
    request_id: str | None = None

    @property
    def kind(self) -> Literal["login"]:
        return "login"

    def as_dict(self) -> dict[str, object]:
        """The event as a JSON-ready mapping, ``{"event": "login", ...}``."""
        return {"event": "login", **self._asdict()}


Event = RequestEvent | LoginEvent
"""Anything a sink receives."""

RiskStatus = Literal["scored", "late", "unavailable", "not_scored"]


@dataclass(frozen=True, slots=True)
class LoginRisk:
    """What the risk service said about a login attempt; the app decides what to do with it.

    ``status`` tells the cases apart: ``scored`` (``score`` is set), ``late`` (no answer within
    the deadline; the call still completes and is counted in the background), ``unavailable``
    (the service failed) and ``not_scored`` (no scoring sink, reporting off, or no session to
    score the attempt for). ``score`` runs from 0 to 100, higher is riskier.
    ``trusted`` says whether the identifier was already trusted on this device, ``attempts``
    how many attempts the service had seen before, ``last_login_at`` the ISO 8601 time of the
    last good login it knows of.
    """

    status: RiskStatus
    score: int | None = None
    trusted: bool | None = None
    attempts: int | None = None
    last_login_at: str | None = None
