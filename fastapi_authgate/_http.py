"""The only place httpx clients are built, and where outbound failures become ``ProviderError``.

Every call to an identity provider goes through :func:`request_json`: one overall deadline for
connect, send and the whole body (a per-read timeout would let a server trickle bytes forever), a
size cap enforced while streaming, redirects refused, and any timeout, connection error, 3xx, 4xx,
5xx or non-JSON body turned into :class:`~fastapi_authgate.errors.ProviderError` raised ``from``
its cause. Each failure is logged once, for operators, naming the endpoint (without query string
or credentials) and the reason.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Mapping
from typing import Any, Final

import anyio
import httpx

from fastapi_authgate.errors import ProviderError

__all__ = ["DEFAULT_MAX_BYTES", "build_client", "fetch_json", "request_json"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 1 << 20
_USER_AGENT: Final = "fastapi-authgate"


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
    headers: Mapping[str, str] | None = None,
    deadline: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str,
) -> tuple[Any, httpx.Headers]:
    """Send one request and return ``(decoded JSON body, response headers)``.

    Args:
        client: a client from :func:`build_client` (or any ``httpx.AsyncClient``).
        method: the HTTP method.
        url: the endpoint.
        json: a JSON body to send, if any.
        headers: extra request headers (their values are never logged).
        deadline: seconds for the whole exchange, body included.
        max_bytes: the largest body accepted; longer bodies are refused while streaming.
        what: what is being fetched, for the operator log ("JWKS fetch", "session verify").

    Raises:
        ProviderError: timeout, connection failure, redirect, 4xx/5xx status, oversized or
            non-JSON body; raised ``from`` the underlying exception.
    """
    try:
        with anyio.fail_after(deadline):
            async with client.stream(method, url, json=json, headers=headers) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise _Refused(f"redirect ({status}) refused")
                if status >= 400:
                    raise _Refused(f"HTTP {status}")
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
                body = b"".join(chunks)
    except TimeoutError as exc:
        raise _fail(what, url, f"timeout after {deadline:g}s") from exc
    except _Refused as exc:
        raise _fail(what, url, str(exc)) from exc
    except httpx.TimeoutException as exc:
        raise _fail(what, url, f"timeout ({type(exc).__name__})") from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise _fail(what, url, f"{type(exc).__name__}") from exc
    try:
        data = jsonlib.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _fail(what, url, f"response is not JSON (HTTP {status})") from exc
    return data, response.headers


def _fail(what: str, url: str, reason: str) -> ProviderError:
    logger.warning("%s from %s failed: %s; answering 503", what, _safe_url(url), reason)
    return ProviderError()
