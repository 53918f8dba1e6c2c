"""The only place httpx clients are built, and where outbound failures become ``ProviderError``.

Every call to an identity provider goes through :func:`request_json`: one overall deadline for
connect, send and the whole body (a per-read timeout would let a server trickle bytes forever), a
size cap enforced while streaming, redirects refused, and any timeout, connection error, 3xx, 4xx,
5xx or non-JSON body turned into :class:`~fastapi_authgate.errors.ProviderError` raised ``from``
its cause. REST clients pass ``api_errors=True`` to get status answers as
:class:`~fastapi_authgate.errors.ProviderResponseError` (status, error code, message, body,
``Retry-After``) instead. Each failure is logged once, for operators, naming the endpoint (without
query string or credentials) and the reason.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx

from fastapi_authgate.errors import ConfigurationError, ProviderError, ProviderResponseError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "build_client",
    "check_base_url",
    "fetch_json",
    "is_this_machine",
    "request_json",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 1 << 20
_USER_AGENT: Final = "fastapi-authgate"


def check_base_url(url: str, variable: str) -> str:
    """A provider's base URL, checked at startup: ``url`` without its trailing ``/``.

    Every provider sends a secret (API key, project secret, users' passwords and tokens) to its
    base URL, so the same rule holds for all of them: http(s) with a host, no query, fragment or
    user info, and https unless the host is this machine (a local fake or sidecar).

    Raises:
        ConfigurationError: naming ``variable``, the setting to fix.
    """
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = (parts.hostname or "").lower() if parts is not None else ""
    except ValueError:
        parts, host = None, ""
    if parts is None or parts.scheme not in ("https", "http") or not host or "\0" in url:
        raise ConfigurationError(f"{variable} must be an http(s) URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{variable} must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not is_this_machine(host):
        raise ConfigurationError(
            f"{variable} must use https (plain http is accepted for this machine only): "
            "keys and secrets must not cross the network in clear text"
        )
    return url.rstrip("/")


def is_this_machine(host: str) -> bool:
    """True for ``localhost``, a ``*.localhost`` name or a loopback address (lowercase host)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_client(*, timeout: float = 5.0) -> httpx.AsyncClient:
    """A client for provider calls: redirects off, bounded pool, uncompressed JSON asked for.

    ``timeout`` bounds each network phase; callers still pass an overall ``deadline`` to
    :func:`request_json`.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=30),
        # identity encoding: a small compressed body cannot expand past the size cap unseen
        headers={
            "User-Agent": _USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        },
    )


def _safe_url(url: str | httpx.URL) -> str:
    try:
        parsed = httpx.URL(url)
        return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))
    except Exception:  # an unparsable URL is logged by its scheme only
        return str(url).split(":", 1)[0] + ":<unparsable>"


class _Refused(Exception):
    """A response we will not use; the message is the reason for the operator log."""


class _StatusAnswer(Exception):
    """A non-2xx answer that the caller asked to see (``api_errors=True``)."""

    def __init__(self, status: int, body: bytes, headers: httpx.Headers) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    deadline: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str,
) -> tuple[Any, httpx.Headers]:
    """``GET url`` and decode its JSON body; see :func:`request_json`."""
    return await request_json(client, "GET", url, deadline=deadline, max_bytes=max_bytes, what=what)


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: Any = None,
    params: Mapping[str, str | int] | None = None,
    headers: Mapping[str, str] | None = None,
    deadline: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str,
    api_errors: bool = False,
    allow_empty: bool = False,
) -> tuple[Any, httpx.Headers]:
    """Send one request and return ``(decoded JSON body, response headers)``.

    Args:
        client: a client from :func:`build_client` (or any ``httpx.AsyncClient``).
        method: the HTTP method.
        url: the endpoint.
        json: a JSON body to send, if any.
        params: query parameters (never logged).
        headers: extra request headers (their values are never logged).
        deadline: seconds for the whole exchange, body included.
        max_bytes: the largest body accepted; longer bodies are refused while streaming.
        what: what is being fetched, for the operator log ("JWKS fetch", "session verify").
        api_errors: for REST clients, whose callers must tell a 404 from a 401 from a 429: a
            3xx/4xx/5xx answer raises :class:`ProviderResponseError` with the status, the
            ``error``/``message`` of the JSON error body, the parsed body and ``Retry-After``.
            Without it (verifiers) any such status is a plain ``ProviderError``.
        allow_empty: an empty 2xx body (such as a 204) decodes to ``None`` instead of failing.

    Raises:
        ProviderResponseError: with ``api_errors``, the answer had a non-2xx status.
        ProviderError: timeout, connection failure, redirect, 4xx/5xx status, oversized or
            non-JSON body; raised ``from`` the underlying exception.
    """
    try:
        with anyio.fail_after(deadline):
            # follow_redirects per request: a shared client built to follow them must not
            # carry an API key or project secret to the host a redirect names
            async with client.stream(
                method, url, json=json, params=params, headers=headers, follow_redirects=False
            ) as response:
                status = response.status_code
                if not api_errors:
                    if 300 <= status < 400:
                        raise _Refused(f"redirect ({status}) refused")
                    if status >= 400:
                        raise _Refused(f"HTTP {status}")
                body = await _read_capped(response, max_bytes)
                if status >= 300:
                    raise _StatusAnswer(status, body, response.headers)
    except TimeoutError as exc:
        raise _fail(what, url, f"timeout after {deadline:g}s") from exc
    except _Refused as exc:
        raise _fail(what, url, str(exc)) from exc
    except _StatusAnswer as exc:
        raise _status_error(what, url, exc) from None
    except httpx.TimeoutException as exc:
        raise _fail(what, url, f"timeout ({type(exc).__name__})") from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise _fail(what, url, f"{type(exc).__name__}") from exc
    if allow_empty and not body.strip():
        return None, response.headers
    try:
        data = jsonlib.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _fail(what, url, f"response is not JSON (HTTP {status})") from exc
    return data, response.headers


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _Refused(f"body of {declared} bytes exceeds {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _Refused(f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _fail(what: str, url: str, reason: str) -> ProviderError:
    logger.warning("%s from %s failed: %s; answering 503", what, _safe_url(url), reason)
    return ProviderError()


_MAX_ERROR_TEXT: Final = 2000


def _status_error(what: str, url: str, answer: _StatusAnswer) -> ProviderResponseError:
    """Decode an error answer into :class:`ProviderResponseError` and log it once."""
    status = answer.status
    body: object = None
    if answer.body.strip():
        try:
            body = jsonlib.loads(answer.body)
        except (ValueError, RecursionError):
            body = answer.body[:_MAX_ERROR_TEXT].decode("utf-8", "replace")
    code = message = None
    if isinstance(body, dict):
        raw_code, raw_message = body.get("error"), body.get("message")
        code = raw_code if isinstance(raw_code, str) else None
        message = raw_message if isinstance(raw_message, str) else None
    if 300 <= status < 400:
        reason = f"redirect ({status}) refused"
        message = message or "redirect refused"
    else:
        reason = f"HTTP {status}" + (f" ({code[:64]!r})" if code else "")
    # A 401/403 means our own key is wrong, a 429 or 5xx that the provider is struggling:
    # operators must see those. Other 4xx answers (no such user, bad input) are the caller's.
    loud = status < 400 or status in (401, 403, 429) or status >= 500
    level = logging.WARNING if loud else logging.INFO
    logger.log(level, "%s from %s answered %s", what, _safe_url(url), reason)
    return ProviderResponseError(
        status=status,
        code=code,
        message=message,
        body=body,
        retry_after=_retry_after(answer.headers.get("retry-after")),
    )


def _retry_after(value: str | None) -> float | None:
    """Delay-seconds of a ``Retry-After`` header; an HTTP date or garbage counts as absent."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 9:
        return None
    return float(text)
