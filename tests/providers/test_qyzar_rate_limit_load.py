"""qyzar_rate_limited under load: hundreds of concurrent requests over real sockets, exact count."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthGate
from fastapi_authgate.providers.qyzar import QyzarSessionVerifier
from fastapi_authgate.qyzar_dependencies import qyzar_rate_limited
from fastapi_authgate.testing import serve
from tests.providers.qyzar_support import Served, qyzar, served_qyzar

__all__ = ["qyzar", "served_qyzar"]

pytestmark = pytest.mark.anyio


async def test_300_concurrent_requests_get_exactly_the_limit(qyzar: Served) -> None:
    gate = AuthGate(QyzarSessionVerifier(qyzar.client(timeout=30)))
    app = FastAPI()
    gate.install(app)

    @app.get("/hot", dependencies=[Depends(qyzar_rate_limited("50/hour"))])
    async def hot() -> dict[str, bool]:
        return {"ok": True}

    with serve(app) as url:
        limits = httpx.Limits(max_connections=150, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as load:
            answers = await asyncio.wait_for(
                asyncio.gather(*(load.get("/hot") for _ in range(300))), timeout=120
            )
    await gate.aclose()
    statuses = [a.status_code for a in answers]
    assert (statuses.count(200), statuses.count(429)) == (50, 250)
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert qyzar.fake.calls["rate-limit-check"] == 300
