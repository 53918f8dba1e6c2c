from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import HTTPConnection

from fastapi_authgate.credentials import parse_bearer, read_credentials
from fastapi_authgate.errors import AuthenticationError


def conn(*headers: tuple[bytes, bytes]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": list(headers), "path": "/"})


def test_no_headers_means_no_credentials() -> None:
    assert read_credentials(conn()) is None


def test_bearer_is_read_case_insensitively() -> None:
    creds = read_credentials(conn((b"authorization", b"bEaReR abc.def-ghi_~+/=")))
    assert creds is not None
    assert creds.bearer == "abc.def-ghi_~+/="


def test_cookies_are_parsed_and_merged() -> None:
    creds = read_credentials(conn((b"cookie", b"a=1; b=2"), (b"cookie", b"authgate_session=t")))
    assert creds is not None
    assert dict(creds.cookies) == {"a": "1", "b": "2", "authgate_session": "t"}
    assert creds.bearer is None


def test_api_key_header_is_opt_in() -> None:
    c = conn((b"x-api-key", b"k-123"))
    assert read_credentials(c) is None
    creds = read_credentials(c, api_key_header=b"x-api-key")
    assert creds is not None and creds.api_key == "k-123"


def test_repr_hides_secrets() -> None:
    creds = read_credentials(
        conn((b"authorization", b"Bearer supersecret"), (b"cookie", b"s=cookiesecret"))
    )
    assert "supersecret" not in repr(creds)
    assert "cookiesecret" not in repr(creds)


@pytest.mark.parametrize("value", ["Basic abc", "Digest x", "Token abc", "", "bearerabc"])
def test_other_schemes_are_not_bearer(value: str) -> None:
    assert parse_bearer(value) is None


@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer ", "Bearer a b", "Bearer =abc", "Bearer a\tb", "Bearer ab\u00ff"]
)
def test_malformed_bearer_is_an_authentication_error(value: str) -> None:
    with pytest.raises(AuthenticationError):
        parse_bearer(value)


def test_a_huge_cookie_of_ours_is_refused_and_a_huge_other_one_ignored() -> None:
    huge = conn((b"cookie", b"authgate_session=" + b"x" * 20000))
    with pytest.raises(AuthenticationError):
        read_credentials(huge, cookie_names=("authgate_session",))
    with pytest.raises(AuthenticationError):
        read_credentials(huge, unique_cookies=("authgate_session",))
    other = conn((b"cookie", b"a=" + b"x" * 20000))
    assert read_credentials(other, cookie_names=("authgate_session",)) is None


def test_no_cookies_are_read_next_to_a_bearer() -> None:
    creds = read_credentials(conn((b"cookie", b"s=1; s=2"), (b"authorization", b"Bearer t")))
    assert creds is not None and creds.bearer == "t" and not creds.cookies


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_headers_raise_only_our_errors(auth: bytes, cookie: bytes) -> None:
    with contextlib.suppress(AuthenticationError):
        read_credentials(conn((b"authorization", auth), (b"cookie", cookie)))
