"""The two Qyzar session cookies, read strictly, and the tri-state ``UNSET`` marker.

A browser holds a Qyzar session as ``qyzar_session_token`` and ``qyzar_session_id``. Only those
two ever go upstream. A raw Cookie header is split here rather than by a lenient parser, so a
cookie sent twice is seen (and refused) instead of silently resolved to one of its values, which
would let a cookie planted by a sibling subdomain choose which session is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "MAX_COOKIE_VALUE",
    "SESSION_ID_COOKIE",
    "SESSION_TOKEN_COOKIE",
    "UNSET",
    "Unset",
    "session_pair",
]

SESSION_TOKEN_COOKIE: Final = "qyzar_session_token"
SESSION_ID_COOKIE: Final = "qyzar_session_id"
MAX_COOKIE_VALUE: Final = 4096
_COOKIE_OCTETS: Final = frozenset(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\'
)  # RFC 6265 cookie-octet


class Unset:
    """The type of :data:`UNSET`: "leave this key alone" in a tri-state metadata patch."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()
"""Leave a key alone in :meth:`QyzarClient.patch_extra_metadata` (``None`` deletes it)."""


def _valid_cookie_value(value: str) -> str | None:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not value or len(value) > MAX_COOKIE_VALUE or not set(value) <= _COOKIE_OCTETS:
        return None
    return value


def session_pair(
    cookies: str | Mapping[str, str],
    *,
    token_cookie: str = SESSION_TOKEN_COOKIE,
    id_cookie: str = SESSION_ID_COOKIE,
) -> tuple[str, str] | str | None:
    """The ``(session_id, session_token)`` pair from a Cookie header or a cookie mapping.

    Returns ``None`` when neither cookie is there, the reason (``"incomplete"``, ``"duplicate"``,
    ``"malformed"``) when they cannot be trusted, else the pair. A raw header is split here, not
    by a lenient parser, so a cookie sent twice is seen rather than silently resolved.
    """
    found: dict[str, str] = {}
    if isinstance(cookies, str):
        for part in cookies.split(";"):
            name, sep, value = part.strip().partition("=")
            name = name.strip()
            if not sep or name not in (token_cookie, id_cookie):
                continue
            if name in found:
                return "duplicate"
            found[name] = value.strip()
    else:
        for wanted in (token_cookie, id_cookie):
            given = cookies.get(wanted)
            if given is not None:
                found[wanted] = given
    if not found:
        return None
    if len(found) < 2:
        return "incomplete"
    session_id = _valid_cookie_value(found[id_cookie])
    session_token = _valid_cookie_value(found[token_cookie])
    if session_id is None or session_token is None:
        return "malformed"
    return session_id, session_token
