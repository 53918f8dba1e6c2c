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
