"""``QyzarSink``: request events to Qyzar's request logs, login attempts to its anti-ATO calls.

Wire format: ``providers/WIRE.md``, Qyzar section. Request events go to
``POST /projects/client/request-logs`` in batches of 1 to 500 (``max_batch``, so the reporter never
hands more), mapped to the wire's camelCase fields (``durationMs``, ``userAgent``, ``sessionId``,
``subject``, ``requestId``, ``at``); optional fields are left out when empty, and a request that
matched no route carries its path as ``route``. Login attempts do not travel in batches: the
reporter calls :meth:`QyzarSink.score_login` (``ato-login-attempt``, which both records the
attempt and answers its risk) and :meth:`QyzarSink.trust_identifier` (``ato-add-identifier``).
Qyzar scores an attempt for a device session; the sink names the ``qyzar_session_id`` cookie
as the place to find it.

The sink only adapts: the HTTP calls, the deadline, the project secret and the error mapping are
the Qyzar client's. Any object with the three methods of :class:`QyzarReportingClient` fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from fastapi_authgate.events import Event, LoginEvent, LoginRisk, RequestEvent

__all__ = ["MAX_QYZAR_BATCH", "QyzarReportingClient", "QyzarSink", "request_log_entry"]

MAX_QYZAR_BATCH = 500
"""The most events one ``request-logs`` call takes (WIRE.md)."""


class QyzarReportingClient(Protocol):
    """The three Qyzar client methods the sink uses (``QyzarClient`` has them)."""

    async def log_user_api_request(self, *, events: Sequence[Mapping[str, object]]) -> object: ...

    async def log_attempted_login(
        self, *, session_id: str, identifier: str, success: bool | None = None
    ) -> object: ...

    async def add_ato_trusted_identifier(self, *, session_id: str, identifier: str) -> object: ...


def request_log_entry(event: RequestEvent) -> dict[str, object]:
    """One ``request-logs`` event on the wire."""
    entry: dict[str, object] = {
        "method": event.method,
        "path": event.path,
        "route": event.route if event.route is not None else event.path,
        "status": event.status,
        "durationMs": round(event.duration_ms, 3),
        "ip": event.ip,
        "userAgent": event.user_agent or "",
        "at": event.at,
    }
    if event.session_id is not None:
        entry["sessionId"] = event.session_id
    if event.subject is not None:
        entry["subject"] = event.subject
    if event.request_id is not None:
        entry["requestId"] = event.request_id
    return entry


class QyzarSink:
    """An :class:`~fastapi_authgate.protocols.EventSink` and ``LoginScorer`` for Qyzar.

    Args:
        client: the Qyzar client (``QyzarClient``), or anything with the same three methods.
        own_client: close ``client`` (``aclose``) when the reporter shuts down; leave it
            ``False`` when the client is shared with the gate's verifier.
        permanent_errors: exception types a retry cannot cure (``QyzarSecretError``: Qyzar
            refused the project secret or id); the batch fails at once instead of being retried.
    """

    max_batch = MAX_QYZAR_BATCH
    session_cookie = "qyzar_session_id"

    def __init__(
        self,
        client: QyzarReportingClient,
        *,
        own_client: bool = False,
        permanent_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.client = client
        self.own_client = own_client
        self.permanent_errors = permanent_errors

    async def send(self, events: Sequence[Event]) -> None:
        """Send the request events of the batch in one ``request-logs`` call."""
        entries = [request_log_entry(e) for e in events if isinstance(e, RequestEvent)]
        if not entries:
            return
        try:
            await self.client.log_user_api_request(events=entries)
        except self.permanent_errors as exc:
            exc.retryable = False  # type: ignore[attr-defined]  # read by the reporter
            raise

    async def score_login(self, event: LoginEvent) -> LoginRisk:
        """``ato-login-attempt`` for the attempt's session; the answer as a :class:`LoginRisk`."""
        if event.session_id is None:
            return LoginRisk(status="not_scored")
        result = await self.client.log_attempted_login(
            session_id=event.session_id, identifier=event.identifier, success=event.success
        )
        return _risk(result, event.identifier)

    async def trust_identifier(self, *, session_id: str, identifier: str) -> None:
        """``ato-add-identifier``."""
        await self.client.add_ato_trusted_identifier(session_id=session_id, identifier=identifier)

    async def aclose(self) -> None:
        if self.own_client:
            closer = getattr(self.client, "aclose", None)
            if callable(closer):
                await closer()


def _field(result: object, *names: str) -> object:
    for name in names:
        if isinstance(result, Mapping):
            if name in result:
                return result[name]
        elif hasattr(result, name):
            return getattr(result, name)
    return None


def _risk(result: object, identifier: str) -> LoginRisk:
    score = _field(result, "score")
    prior = _field(result, "prior")
    trusted = _field(prior, "trusted_identifiers", "trustedIdentifiers") if prior else None
    attempts = _field(prior, "attempts") if prior else None
    last = _field(result, "last_login_at", "lastLoginAt")
    if not isinstance(score, int | float) or isinstance(score, bool):
        return LoginRisk(status="unavailable")
    return LoginRisk(
        status="scored",
        score=max(0, min(100, round(score))),
        trusted=identifier in trusted if isinstance(trusted, list | tuple | frozenset) else None,
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
        last_login_at=last if isinstance(last, str) else (str(last) if last is not None else None),
    )
