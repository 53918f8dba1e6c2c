"""request_json/fetch_json against a real server on 127.0.0.1, plus MockTransport for the rest."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.responses import StreamingResponse

from fastapi_authgate._http import build_client, fetch_json, request_json
from fastapi_authgate.errors import ProviderError, ProviderResponseError
from tests.servers import serve

app = FastAPI()


@app.get("/ok")
async def ok() -> Response:
    return JSONResponse({"hello": "world"}, headers={"Cache-Control": "max-age=60"})


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return {"body": await request.json(), "x-test": request.headers.get("x-test")}


@app.get("/status/{code}")
async def status(code: int) -> Response:
    return JSONResponse({"code": code}, status_code=code)


@app.get("/redirect")
async def redirect() -> Response:
    return RedirectResponse("/ok", status_code=302)


@app.get("/text")
async def text() -> Response:
    return PlainTextResponse("<html>nope")


@app.get("/empty")
async def empty() -> Response:
    return Response(status_code=204)


@app.get("/big")
async def big() -> Response:
    return JSONResponse({"pad": "x" * 5000})


async def _trickle() -> AsyncIterator[bytes]:
    yield b'{"pad": "'
    for _ in range(1000):
        yield b"x" * 1024
    yield b'"}'


@app.get("/big-chunked")
async def big_chunked() -> Response:
    return StreamingResponse(_trickle(), media_type="application/json")


async def _slow_body() -> AsyncIterator[bytes]:
    yield b'{"a": '
    for _ in range(150):  # a byte now and then: every single read is fast, the whole is not
        await asyncio.sleep(0.02)
        yield b" "
    yield b"1}"


@app.get("/slow-body")
async def slow_body() -> Response:
    return StreamingResponse(_slow_body(), media_type="application/json")


@app.get("/slow")
async def slow() -> dict[str, int]:
    await asyncio.sleep(3.0)
    return {"late": 1}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.mark.anyio
async def test_fetch_json_returns_body_and_headers(base_url: str) -> None:
    async with build_client() as client:
        data, headers = await fetch_json(client, base_url + "/ok", deadline=2, what="test fetch")
    assert data == {"hello": "world"}
    assert headers["cache-control"] == "max-age=60"


@pytest.mark.anyio
async def test_request_json_sends_a_body_and_headers(base_url: str) -> None:
    async with build_client() as client:
        data, _ = await request_json(
            client,
            "POST",
            base_url + "/echo",
            json={"a": [1, 2]},
            headers={"X-Test": "yes"},
            deadline=2,
            what="echo",
        )
    assert data == {"body": {"a": [1, 2]}, "x-test": "yes"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/status/500", "HTTP 500"),
        ("/status/503", "HTTP 503"),
        ("/status/404", "HTTP 404"),
        ("/status/401", "HTTP 401"),
        ("/redirect", "redirect (302) refused"),
        ("/text", "not JSON"),
        ("/empty", "not JSON"),
        ("/big", "exceeds 1000"),
        ("/big-chunked", "exceeds 1000"),
    ],
)
async def test_bad_answers_become_provider_errors(
    base_url: str, path: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with build_client() as client:
        with (
            caplog.at_level(logging.WARNING, logger="fastapi_authgate._http"),
            pytest.raises(ProviderError) as raised,
        ):
            url = base_url + path + "?token=s3cret"
            await fetch_json(client, url, deadline=2, max_bytes=1000, what="X")
    assert raised.value.__cause__ is not None
    assert raised.value.error == "provider_unavailable"
    [line] = [r.getMessage() for r in caplog.records if r.name == "fastapi_authgate._http"]
    assert line.startswith(f"X from {base_url}{path} failed: ")
    assert reason in line and line.endswith("; answering 503")
    assert "s3cret" not in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/slow", "/slow-body"])
async def test_overall_deadline(base_url: str, path: str, caplog: pytest.LogCaptureFixture) -> None:
    async with build_client(timeout=5) as client:
        started = time.monotonic()
        with (
            caplog.at_level(logging.WARNING, logger="fastapi_authgate._http"),
            pytest.raises(ProviderError) as raised,
        ):
            await fetch_json(client, base_url + path, deadline=0.3, what="JWKS fetch")
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # well under the 3 s a missing deadline would take
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert "JWKS fetch from" in caplog.text and "timeout after 0.3s; answering 503" in caplog.text


@pytest.mark.anyio
async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        async with build_client() as client:
            with pytest.raises(ProviderError) as raised:
                await fetch_json(client, f"http://127.0.0.1:{port}/", deadline=2, what="x")
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


class Raising:
    """A MockTransport handler that raises the given exception for every request."""

    def __init__(self, exc: type[Exception]) -> None:
        self.exc = exc
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.exc("simulated", request=request)  # type: ignore[call-arg]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
async def test_transport_errors(exc: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    handler = Raising(exc)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderError) as raised:
            await fetch_json(client, "https://idp.example/jwks", deadline=1, what="JWKS fetch")
    assert isinstance(raised.value.__cause__, exc)
    assert handler.calls == 1
    assert "https://idp.example/jwks failed" in caplog.text


@pytest.mark.anyio
async def test_invalid_url_and_declared_length() -> None:
    async with build_client() as client:
        with pytest.raises(ProviderError):
            await fetch_json(client, "not a url", deadline=1, what="x")

    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "99999999"}, content=b"{}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(huge)) as client:
        with pytest.raises(ProviderError):
            await fetch_json(client, "https://idp.example/", deadline=1, max_bytes=10, what="x")


@pytest.mark.anyio
async def test_depth_bomb_body_is_not_json() -> None:
    def bomb(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" * 200_000)

    async with httpx.AsyncClient(transport=httpx.MockTransport(bomb)) as client:
        with pytest.raises(ProviderError):
            await fetch_json(client, "https://idp.example/", deadline=1, what="x")


def test_build_client_is_safe_by_default() -> None:
    client = build_client(timeout=2)
    assert client.follow_redirects is False
    assert client.timeout.read == 2
    assert client.headers["accept"] == "application/json"


@app.get("/api-error/{code}")
async def api_error(code: int) -> Response:
    headers = {"Retry-After": "7"} if code == 429 else None
    return JSONResponse(
        {"error": f"e{code}", "message": "said the provider", "extra": 1},
        status_code=code,
        headers=headers,
    )


@app.get("/api-text-error")
async def api_text_error() -> Response:
    return PlainTextResponse("<html>bad gateway</html>", status_code=502)


@app.get("/api-empty-error")
async def api_empty_error() -> Response:
    return Response(status_code=500)


@app.get("/query")
async def query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


@pytest.mark.anyio
@pytest.mark.parametrize("code", [400, 401, 404, 409, 429, 500, 503])
async def test_api_errors_carry_status_code_message_and_body(
    base_url: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with build_client() as client:
        with (
            caplog.at_level(logging.INFO, logger="fastapi_authgate._http"),
            pytest.raises(ProviderResponseError) as raised,
        ):
            await request_json(
                client, "GET", f"{base_url}/api-error/{code}", deadline=2, what="x", api_errors=True
            )
    error = raised.value
    assert (error.status, error.code, error.message) == (code, f"e{code}", "said the provider")
    assert error.body == {"error": f"e{code}", "message": "said the provider", "extra": 1}
    assert isinstance(error, ProviderError) and error.error == "provider_unavailable"
    assert error.description == ProviderError.default_description  # nothing echoed to clients
    assert str(error) == f"HTTP {code}: e{code} said the provider"
    if code == 429:
        assert (error.provider_retry_after, error.retry_after) == (7, 7)
    else:
        assert (error.provider_retry_after, error.retry_after) == (None, 5)
    [record] = [r for r in caplog.records if r.name == "fastapi_authgate._http"]
    assert (
        record.getMessage()
        == f"x from {base_url}/api-error/{code} answered HTTP {code} ('e{code}')"
    )
    loud = code in (401, 429) or code >= 500
    assert record.levelno == (logging.WARNING if loud else logging.INFO)


@pytest.mark.anyio
async def test_api_errors_keep_non_json_and_empty_bodies_and_refuse_redirects(
    base_url: str,
) -> None:
    async with build_client() as client:
        with pytest.raises(ProviderResponseError) as text:
            await request_json(
                client, "GET", base_url + "/api-text-error", deadline=2, what="x", api_errors=True
            )
        with pytest.raises(ProviderResponseError) as empty:
            await request_json(
                client, "GET", base_url + "/api-empty-error", deadline=2, what="x", api_errors=True
            )
        with pytest.raises(ProviderResponseError) as redirect:
            await request_json(
                client, "GET", base_url + "/redirect", deadline=2, what="x", api_errors=True
            )
        with pytest.raises(ProviderError) as garbage:
            await request_json(
                client, "GET", base_url + "/text", deadline=2, what="x", api_errors=True
            )
    assert (text.value.status, text.value.code, text.value.body) == (
        502,
        None,
        "<html>bad gateway</html>",
    )
    assert (empty.value.status, empty.value.body, str(empty.value)) == (500, None, "HTTP 500")
    assert (redirect.value.status, redirect.value.message) == (302, "redirect refused")
    assert type(garbage.value) is ProviderError  # a 200 that is not JSON is no status answer


@pytest.mark.anyio
async def test_without_api_errors_a_status_is_a_plain_provider_error(base_url: str) -> None:
    async with build_client() as client:
        with pytest.raises(ProviderError) as raised:
            await request_json(client, "GET", base_url + "/api-error/404", deadline=2, what="x")
    assert type(raised.value) is ProviderError


@pytest.mark.anyio
async def test_params_and_allow_empty(base_url: str) -> None:
    async with build_client() as client:
        data, _ = await request_json(
            client,
            "GET",
            base_url + "/query",
            params={"limit": 5, "cursor": "a b"},
            deadline=2,
            what="x",
        )
        empty, _ = await request_json(
            client, "GET", base_url + "/empty", deadline=2, what="x", allow_empty=True
        )
    assert data == {"limit": "5", "cursor": "a b"}
    assert empty is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "expected"), [("12", 12), ("0", 1), ("soon", 5), ("Wed, 21 Oct 2015 07:28:00 GMT", 5)]
)
async def test_retry_after_is_read_as_seconds_only(value: str, expected: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value}, json={"error": "slow_down"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(ProviderResponseError) as raised:
            await request_json(
                client, "GET", "https://api.example/", deadline=1, what="x", api_errors=True
            )
    assert raised.value.retry_after == expected


@pytest.mark.anyio
async def test_a_client_built_to_follow_redirects_still_does_not() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/x"})

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(ProviderError):
            await request_json(
                client,
                "POST",
                "https://provider.example/verify",
                headers={"X-Api-Key": "secret"},
                deadline=5,
                what="verify",
            )
    assert hosts == ["provider.example"]
