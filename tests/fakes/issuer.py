"""A fake OIDC/JWKS issuer: a real FastAPI app served on 127.0.0.1 by ``tests.servers.serve``.

Routes: ``GET /.well-known/openid-configuration`` and ``GET /jwks.json``. Knobs (plain attributes,
set from the test thread): ``jwks`` (what is served; :meth:`rotate` replaces it), ``mode`` (how the
JWKS route misbehaves), ``delay`` (seconds to stall before answering), ``cache_control`` and
``discovered_issuer`` (to make discovery lie). ``hits`` counts requests per path.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.responses import StreamingResponse

from tests.servers import serve
from tests.tokens import default_jwks

Mode = Literal["ok", "error", "garbage", "not_object", "no_keys", "huge", "redirect", "not_found"]

HUGE_BYTES = 2 * 1024 * 1024


class FakeIssuer:
    """One issuer; use :meth:`running` to serve it."""

    def __init__(self, jwks: Mapping[str, Any] | None = None) -> None:
        self.base_url = ""
        self.hits: Counter[str] = Counter()
        self.reset(jwks)
        self.app = self._build_app()

    def reset(self, jwks: Mapping[str, Any] | None = None) -> None:
        """Back to a healthy issuer serving ``jwks`` (default: the shared RSA and EC keys)."""
        self.jwks: dict[str, Any] = dict(jwks if jwks is not None else default_jwks())
        self.mode: Mode = "ok"
        self.delay = 0.0
        self.cache_control: str | None = None
        self.discovered_issuer: str | None = None
        self.hits.clear()

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/jwks.json"

    @property
    def jwks_hits(self) -> int:
        return self.hits["/jwks.json"]

    def rotate(self, *public_jwks: Any) -> None:
        """Publish exactly these keys (or whatever junk a test wants) from now on."""
        self.jwks = {"keys": [dict(k) if isinstance(k, Mapping) else k for k in public_jwks]}

    @contextmanager
    def running(self) -> Iterator[FakeIssuer]:
        with serve(self.app) as url:
            self.base_url = url
            try:
                yield self
            finally:
                self.delay = 0.0  # lets a stalled handler finish so the server can stop

    async def _stall(self) -> None:
        for _ in range(int(self.delay / 0.01)):
            if self.delay <= 0:
                break
            await asyncio.sleep(0.01)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            self.hits["/.well-known/openid-configuration"] += 1
            await self._stall()
            return {
                "issuer": self.discovered_issuer or self.issuer,
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }

        @app.get("/jwks.json")
        async def jwks() -> Response:
            self.hits["/jwks.json"] += 1
            await self._stall()
            headers = {"Cache-Control": self.cache_control} if self.cache_control else None
            mode = self.mode
            if mode == "error":
                return JSONResponse({"error": "boom"}, status_code=500)
            if mode == "not_found":
                return JSONResponse({"error": "missing"}, status_code=404)
            if mode == "garbage":
                return PlainTextResponse("<html>this is not json", headers=headers)
            if mode == "not_object":
                return JSONResponse(["keys"], headers=headers)
            if mode == "no_keys":
                return JSONResponse({"keys": []}, headers=headers)
            if mode == "redirect":
                return RedirectResponse("/.well-known/openid-configuration", status_code=302)
            if mode == "huge":
                return StreamingResponse(_huge_body(), media_type="application/json")
            return JSONResponse(self.jwks, headers=headers)

        return app


async def _huge_body() -> AsyncIterator[bytes]:
    yield b'{"keys": [], "padding": "'
    chunk = b"x" * 65536
    for _ in range(HUGE_BYTES // len(chunk)):
        yield chunk
    yield b'"}'
