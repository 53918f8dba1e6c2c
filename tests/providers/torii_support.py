"""A served FakeTorii shared by the torii tests (one key generation, one server per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastapi_authgate.testing import FakeTorii
from tests.servers import serve

SECRET = "sk_test_0123456789abcdef_ok"


def served_fake(**options: object) -> Iterator[FakeTorii]:
    fake = FakeTorii(secret_key=SECRET, **options)  # type: ignore[arg-type]
    with serve(fake.app) as url:
        fake.issuer = url
        try:
            yield fake
        finally:
            fake.heal()  # a stalled handler returns, so the server can stop


def clean(fake: FakeTorii) -> FakeTorii:
    """Back to healthy and empty between tests; keys stay."""
    fake.heal()
    fake.reset_counters()
    fake.users.clear()
    fake.sessions.clear()
    return fake


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTorii]:
    yield from served_fake()


@pytest.fixture
def fake(served: FakeTorii) -> FakeTorii:
    return clean(served)
