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
    assert not _jws._checked_headers  # parsing alone never remembers (see the next test)
    _jws.remember_header(first)
    second = parse_compact(f"{good}.{body}.c2ln")
    assert first.header is second.header  # decoded once
    with pytest.raises(TypeError):
        first.header["alg"] = "none"  # type: ignore[index]
    bad = segment({"alg": "none"})
    for _ in range(2):  # a refused header is never remembered, so it is refused every time
        with pytest.raises(AuthenticationError, match="Unsigned"):
            parse_compact(f"{bad}.{body}.c2ln")
    assert bad.encode() not in _jws._checked_headers
    for index in range(_jws._CHECKED_HEADERS_MAX + 50):
        token = parse_compact(f"{segment({'alg': 'RS256', 'kid': f'k{index}'})}.{body}.c2ln")
        _jws.remember_header(token)
    assert len(_jws._checked_headers) == _jws._CHECKED_HEADERS_MAX
    assert segment({"alg": "RS256", "kid": "k0"}).encode() not in _jws._checked_headers  # oldest


@pytest.mark.anyio
async def test_unauthenticated_headers_never_fill_the_header_cache() -> None:
    """#12 item 12: forged tokens with distinct large headers pin no memory; a verified one does."""
    from fastapi_authgate import _jws
    from fastapi_authgate._jose import public_jwk
    from fastapi_authgate.context import Credentials
    from fastapi_authgate.verifiers.jwks import JWKSVerifier
    from tests.tokens import TokenIssuer, attacker_jwk, compact, rsa_jwk

    _jws._checked_headers.clear()
    minter = TokenIssuer(iss="https://issuer.example", audience=None)
    verifier = JWKSVerifier.from_jwks({"keys": [public_jwk(rsa_jwk())]}, issuer=minter.iss)
    for index in range(300):
        head = {"alg": "RS256", "kid": "rsa-1", "pad": f"{index:04d}" + "x" * 1400}
        forged = compact(head, minter.claims(), jwk=attacker_jwk())
        with pytest.raises(AuthenticationError, match="signature"):
            await verifier.verify(Credentials(bearer=forged))
    assert len(_jws._checked_headers) == 0
    genuine = compact({"alg": "RS256", "kid": "rsa-1"}, minter.claims())
    assert await verifier.verify(Credentials(bearer=genuine)) is not None
    assert list(_jws._checked_headers) == [genuine.split(".")[0].encode()]


def test_header_size_is_capped() -> None:
    from fastapi_authgate import _jws

    body = segment({"sub": "a", "exp": 1})
    for pad_length, refused in ((1400, False), (1600, True)):
        head = segment({"alg": "RS256", "kid": "k", "pad": "x" * pad_length})
        assert (len(head) > _jws.MAX_HEADER_LENGTH) is refused
        if refused:
            with pytest.raises(AuthenticationError, match="header is too large"):
                parse_compact(f"{head}.{body}.c2ln", max_length=65536)
        else:
            assert parse_compact(f"{head}.{body}.c2ln", max_length=65536).header["kid"] == "k"


def _respellings(segment_text: str) -> list[str]:
    """Other spellings that a lax decoder maps to the same bytes: padding, set trailing bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spellings = [segment_text + "=" * (-len(segment_text) % 4)] if len(segment_text) % 4 else []
    spare_bits = {2: 4, 3: 2}.get(len(segment_text) % 4, 0)
    if spare_bits:
        last = alphabet.index(segment_text[-1])
        for low in range(1, 1 << spare_bits):
            spellings.append(segment_text[:-1] + alphabet[last | low])
    return spellings


@pytest.mark.parametrize("part", [0, 1, 2])
def test_only_canonical_base64url_is_accepted(part: int) -> None:
    """#12 item 17: a token has one spelling; the other 15 that a lax decoder takes are refused."""
    body = segment({"sub": "a", "exp": 1, "n": "xy"})  # lengths leave spare bits in each part
    parts = [segment({"alg": "RS256", "kid": "k1"}), body, b64(b"sig-bytes-170")]
    assert all(len(p) % 4 in (2, 3) for p in parts), [len(p) % 4 for p in parts]
    assert parse_compact(".".join(parts)).claims["sub"] == "a"
    others = _respellings(parts[part])
    assert others
    for other in others:
        spelled = list(parts)
        spelled[part] = other
        with pytest.raises(AuthenticationError, match="malformed"):
            parse_compact(".".join(spelled))


def test_bytes_parse_as_their_text_does_and_must_be_ascii() -> None:
    token = f"{HEADER}.{segment({'sub': 'u', 'exp': 1})}.{b64(b'sig')}"
    assert parse_compact(token.encode()) == parse_compact(token)
    with pytest.raises(AuthenticationError, match="malformed"):
        parse_compact(token.encode()[:-1] + "\u00e9".encode())
    with pytest.raises(AuthenticationError, match="too large"):
        parse_compact(token.encode(), max_length=len(token) - 1)
    for not_a_token in (None, 7, bytearray(token.encode())):
        with pytest.raises(AuthenticationError, match="malformed"):
            parse_compact(not_a_token)  # type: ignore[arg-type]
