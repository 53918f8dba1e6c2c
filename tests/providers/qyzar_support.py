"""Shared pieces of the Qyzar tests: one fake Qyzar served over HTTP per module, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from fastapi_authgate.providers.qyzar import QyzarClient
from fastapi_authgate.testing import FakeQyzar
from tests.servers import serve


class Served:
    """A fake Qyzar and the base URL it listens on."""

    def __init__(self, fake: FakeQyzar, url: str) -> None:
        self.fake = fake
        self.url = url

    def client(self, *, secret: str | None = None, timeout: float = 2.0) -> QyzarClient:
        chosen = self.fake.project_secret if secret is None else secret
        return QyzarClient(
            api_url=self.url,
            project_id=self.fake.project_id,
            resolve_project_secret=lambda _pid: chosen,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def served_qyzar() -> Iterator[Served]:
    fake = FakeQyzar()
    with serve(fake.app) as url:
        yield Served(fake, url)


@pytest.fixture
def qyzar(served_qyzar: Served) -> Iterator[Served]:
    """The module's fake with its knobs, counters, rate-limit windows and requests cleared."""
    fake = served_qyzar.fake
    fake.reset()
    fake.clear_rate_limits()
    fake.calls.clear()
    fake.requests.clear()
    yield served_qyzar
    fake.reset()


@pytest.fixture
async def client(qyzar: Served) -> AsyncIterator[QyzarClient]:
    async with qyzar.client() as made:
        yield made
