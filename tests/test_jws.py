"""_jws regressions: strict JSON in the header and payload (the broad cases live in test_jose)."""

from __future__ import annotations

import pytest

from fastapi_authgate._jws import parse_compact
from fastapi_authgate.errors import AuthenticationError
from tests.tokens import b64, segment

HEADER = segment({"alg": "RS256", "kid": "k"})


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub":"\\ud800"}',  # lone high surrogate
        '{"sub":"\\udc00x"}',  # lone low surrogate
        '{"sub":"\\ud83d\\u0041"}',  # high surrogate followed by a non-surrogate
        '{"\\udfff":1,"sub":"u"}',  # in a member name
        '{"sub":"u","roles":[["\\uDBFF"]]}',  # nested, upper-case escape
    ],
)
def test_lone_surrogates_are_malformed(payload: str) -> None:
    # they cannot be encoded as UTF-8 again, so a Redis rate-limit key or a JSON response built
    # from the claims would fail with UnicodeEncodeError (a 500) after verification succeeded
    token = HEADER + "." + b64(payload.encode()) + "." + b64(b"sig")
    with pytest.raises(AuthenticationError, match="malformed"):
        parse_compact(token)


@pytest.mark.parametrize(
    ("payload", "sub"),
    [
        ('{"sub":"\\ud83d\\ude00"}', "\U0001f600"),  # a valid pair is one astral character
        ('{"sub":"\\\\ud800"}', "\\ud800"),  # an escaped backslash, not a surrogate escape
    ],
)
def test_paired_surrogates_and_lookalikes_still_parse(payload: str, sub: str) -> None:
    token = HEADER + "." + b64(payload.encode()) + "." + b64(b"sig")
    assert parse_compact(token).claims["sub"] == sub


def test_checked_headers_are_remembered_read_only_and_bounded() -> None:
    from fastapi_authgate import _jws

    _jws._checked_headers.clear()
    body = segment({"sub": "a", "exp": 1})
    good = segment({"alg": "RS256", "kid": "k1"})
    first = parse_compact(f"{good}.{body}.c2ln")
    second = parse_compact(f"{good}.{body}.c2ln")
    assert first.header is second.header  # decoded once
    with pytest.raises(TypeError):
        first.header["alg"] = "none"  # type: ignore[index]
    bad = segment({"alg": "none"})
    for _ in range(2):  # a refused header is never remembered, so it is refused every time
        with pytest.raises(AuthenticationError, match="Unsigned"):
            parse_compact(f"{bad}.{body}.c2ln")
    assert bad not in _jws._checked_headers
    for index in range(_jws._CHECKED_HEADERS_MAX + 50):
        parse_compact(f"{segment({'alg': 'RS256', 'kid': f'k{index}'})}.{body}.c2ln")
    assert len(_jws._checked_headers) == _jws._CHECKED_HEADERS_MAX
