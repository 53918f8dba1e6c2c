"""Unit tests for _jose: strict parsing, key checks, signature and claim validation."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt as rfc_jwt
from joserfc.jwk import KeySet as RfcKeySet

from fastapi_authgate._claims import ClaimsPolicy, validate_claims
from fastapi_authgate._jose import (
    JoseKey,
    KeySet,
    check_algorithms,
    generate_private_jwk,
    public_jwk,
    sign,
    verify_signature,
)
from fastapi_authgate._jws import parse_compact
from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from tests.tokens import (
    MISSING,
    TokenIssuer,
    b64,
    build_hs256_confusion_token,
    build_jwe_token,
    build_none_alg_token,
    build_tampered_token,
    build_valid_token,
    build_wrong_key_token,
    compact,
    ec_jwk,
    header,
    private_jwk,
    rsa1024_jwk,
    rsa_jwk,
    segment,
)

NOW = 1_800_000_000.0
ISS = "https://issuer.example"
ALLOWED = frozenset({"RS256", "ES256"})
minter = TokenIssuer(iss=ISS, audience="api", clock=lambda: NOW)


def keyset() -> KeySet:
    return KeySet.from_jwks({"keys": [public_jwk(rsa_jwk()), public_jwk(ec_jwk())]}, ALLOWED)


def check(token: str, *, policy: ClaimsPolicy | None = None) -> None:
    parsed = parse_compact(token)
    key = keyset().find(parsed.header.get("kid"), parsed.header["alg"])
    if key is None:
        raise AuthenticationError("unknown key")
    verify_signature(parsed, key, ALLOWED)
    validate_claims(parsed.claims, policy or ClaimsPolicy(ISS, frozenset({"api"})), now=NOW)


# ------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES256", "ES384", "ES512", "HS256"])
def test_generate_sign_and_verify(alg: str) -> None:
    private = generate_private_jwk(alg, kid="k")
    assert private["kid"] == "k" and private["alg"] == alg and private["use"] == "sig"
    key = JoseKey.from_jwk(private)
    assert key.can_sign and key.kid == "k" and key.alg == alg
    public = public_jwk(private)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & public.keys()
    algorithms = frozenset({alg})
    keys = KeySet.from_jwks({"keys": [private if alg == "HS256" else public]}, algorithms)
    token = sign({"sub": "x", "exp": NOW + 10}, key, headers={"alg": "none", "cty": "x"})
    parsed = parse_compact(token)
    assert parsed.header == {"alg": alg, "typ": "JWT", "kid": "k", "cty": "x"}
    found = keys.find("k", alg)
    assert found is not None and not (alg != "HS256" and found.can_sign)
    verify_signature(parsed, found, algorithms)


def test_generate_refuses_unknown_algorithms() -> None:
    with pytest.raises(ConfigurationError):
        generate_private_jwk("PS256", kid="k")


def test_public_key_cannot_sign() -> None:
    with pytest.raises(ConfigurationError, match="private"):
        sign({"sub": "x"}, JoseKey.from_jwk(public_jwk(rsa_jwk())))


@pytest.mark.parametrize(
    ("jwk", "default_alg", "message"),
    [
        ("not a mapping", None, "JSON object"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AA"}, None, "unsupported key type"),
        ({**public_jwk(rsa_jwk()), "use": "enc"}, None, "use must be 'sig'"),
        ({**public_jwk(rsa_jwk()), "key_ops": ["encrypt"]}, None, "key_ops"),
        ({**public_jwk(rsa_jwk()), "kid": 5}, None, "kid"),
        ({**public_jwk(rsa_jwk()), "alg": 5}, None, "alg must be a string"),
        ({**public_jwk(rsa_jwk()), "alg": "ES256"}, None, "does not fit"),
        ({**public_jwk(rsa_jwk()), "alg": "HS256"}, None, "does not fit"),
        ({**public_jwk(rsa_jwk()), "alg": "RS256"}, "RS384", "does not match"),
        ({k: v for k, v in public_jwk(rsa_jwk()).items() if k != "alg"}, None, "no alg"),
        ({"kty": "RSA", "alg": "RS256", "n": "AQAB"}, None, "needs n and e"),
        ({"kty": "RSA", "alg": "RS256", "n": "!!!", "e": "AQAB"}, None, "do not decode"),
        ({**public_jwk(rsa_jwk()), "e": "Ag"}, None, "do not decode"),  # even exponent
        (public_jwk(rsa1024_jwk()), None, "2048"),
        ({**public_jwk(private_jwk("ES384", "p384")), "alg": "ES256"}, None, "not usable"),
        ({**public_jwk(ec_jwk()), "crv": "secp256k1"}, None, "unsupported EC curve"),
        ({"kty": "EC", "crv": "P-256", "alg": "ES256"}, None, "needs x and y"),
        ({**public_jwk(ec_jwk()), "x": "AAAA"}, None, "do not decode"),
        ({"kty": "oct", "alg": "HS256"}, None, "needs k"),
        ({"kty": "oct", "alg": "HS256", "k": b64(b"short")}, None, "shorter than 32"),
        ({"kty": "oct", "alg": "RS256", "k": b64(b"x" * 64)}, None, "does not fit"),
    ],
)
def test_unusable_keys_are_configuration_errors(
    jwk: Any, default_alg: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JoseKey.from_jwk(jwk, default_alg=default_alg)


def test_ec_key_without_alg_takes_its_curve() -> None:
    bare = {k: v for k, v in public_jwk(ec_jwk()).items() if k != "alg"}
    assert JoseKey.from_jwk(bare).alg == "ES256"


def test_keyset_skips_bad_keys_and_binds_bare_keys(caplog: pytest.LogCaptureFixture) -> None:
    bare_rsa = {k: v for k, v in public_jwk(rsa_jwk()).items() if k != "alg"}
    keys = KeySet.from_jwks(
        {
            "keys": [
                bare_rsa,
                public_jwk(rsa1024_jwk()),
                {"kty": "oct", "k": b64(b"x" * 32)},
                public_jwk(private_jwk("RS512", "rs512")),  # outside the allow-list: quietly left
                {**public_jwk(ec_jwk()), "kid": "rsa-1"},  # same kid, another alg: both usable
                {**public_jwk(private_jwk("RS256", "x")), "kid": "rsa-1"},  # duplicate: first wins
                [],
            ]
        },
        frozenset({"RS256", "RS384", "ES256"}),
    )
    assert len(keys) == 1
    assert {keys.find("rsa-1", alg).alg for alg in ("RS256", "RS384", "ES256")} == {  # type: ignore[union-attr]
        "RS256",
        "RS384",
        "ES256",
    }
    assert keys.find("rs512", "RS512") is None
    assert caplog.text.count("skipped") == 3
    assert "same kid" in caplog.text
    with pytest.raises(AuthenticationError, match="algorithm"):
        keys.find("rsa-1", "ES384")
    assert keys.find(None, "RS256") is not None  # one key: a token without kid may use it
    with pytest.raises(ValueError):
        KeySet.from_jwks({"keys": "nope"}, ALLOWED)
    with pytest.raises(AuthenticationError, match="does not name"):
        keyset().find(None, "RS256")


@pytest.mark.parametrize(
    ("algorithms", "message"),
    [([], "empty"), (["none"], "unsupported"), (["RS256", "HS256"], "mixed"), (["rs256"], "unsup")],
)
def test_check_algorithms(algorithms: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_algorithms(algorithms)


def test_check_algorithms_accepts_a_single_string() -> None:
    assert check_algorithms("ES256") == {"ES256"}
    assert check_algorithms(["HS256", "HS512"]) == {"HS256", "HS512"}


# ---------------------------------------------------------------------------------- parsing


def test_parse_compact_splits_and_decodes() -> None:
    token = build_valid_token(minter)
    parsed = parse_compact(token)
    assert parsed.header["kid"] == "rsa-1"
    assert parsed.claims["iss"] == ISS
    assert parsed.signing_input == token.rsplit(".", 1)[0].encode()
    assert len(parsed.signature) == 256


CLAIMS = {"sub": "x", "exp": NOW + 60}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "malformed"),
        ("abc", "malformed"),
        ("a.b", "malformed"),
        ("a.b.c.d", "malformed"),
        (build_jwe_token(), "Encrypted"),
        ("a" * 9000, "too large"),
        (segment(header()) + "." + segment(CLAIMS) + ".c2ln=", "malformed"),
        (segment(header()) + "." + segment(CLAIMS) + ".c2l+", "malformed"),
        (segment(header()) + ".." + "c2ln", "malformed"),
        (segment(header()) + "." + segment(CLAIMS) + ".abcde", "malformed"),
        (segment(header()) + " ." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment("not json") + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment("[1]") + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment('"x"') + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment(header()) + "." + segment("[]") + ".c2ln", "malformed"),
        (segment(header()) + "." + segment(b"\xff\xfe") + ".c2ln", "malformed"),
        (segment(header()) + "." + segment('\ufeff{"sub":"x"}') + ".c2ln", "malformed"),
        (segment(header()) + "." + segment('{"exp": NaN}') + ".c2ln", "malformed"),
        (segment(header()) + "." + segment('{"a":1,"a":2}') + ".c2ln", "malformed"),
        (segment('{"alg":"RS256","alg":"none"}') + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment(header()) + "." + segment("[" * 2500 + "]" * 2500) + ".c2ln", "malformed"),
        (segment("[" * 4000) + "." + segment(CLAIMS) + ".c2ln", "header is too large"),
        (segment("[" * 1500) + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment({"typ": "JWT"}) + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment({"alg": None}) + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment({"alg": "RS256", "kid": 7}) + "." + segment(CLAIMS) + ".c2ln", "malformed"),
        (segment({"alg": "RS256", "enc": "A256GCM"}) + "." + segment(CLAIMS) + ".", "Encrypted"),
        (segment(header(crit=["exp"], exp=1)) + "." + segment(CLAIMS) + ".c2ln", "critical"),
        (segment(header(crit=[])) + "." + segment(CLAIMS) + ".c2ln", "critical"),
        (segment(header(crit="b64")) + "." + segment(CLAIMS) + ".c2ln", "critical"),
        (segment(header(b64=False, crit=["b64"])) + "." + segment(CLAIMS) + ".", "critical"),
        (segment(header(b64=False)) + "." + segment(CLAIMS) + ".c2ln", "Unencoded"),
        (segment(header(b64="false")) + "." + segment(CLAIMS) + ".c2ln", "Unencoded"),
        (build_none_alg_token(minter), "Unsigned"),
        (build_none_alg_token(minter, spelling="NoNe"), "Unsigned"),
    ],
)
def test_parse_compact_refuses(token: str, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        parse_compact(token)


def test_parse_compact_size_cap_is_configurable() -> None:
    token = build_valid_token(minter)
    with pytest.raises(AuthenticationError, match="too large"):
        parse_compact(token, max_length=len(token) - 1)
    assert parse_compact(token, max_length=len(token)).claims["sub"] == "user-1"
    with pytest.raises(AuthenticationError):
        parse_compact(b"a.b.c")  # bytes are parsed as strictly as text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_authentication_error(text: str) -> None:
    with contextlib.suppress(AuthenticationError):
        parse_compact(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=20,
)
segments = st.one_of(
    st.binary(max_size=80).map(b64),
    json_values.map(lambda value: b64(json.dumps(value).encode())),
    st.dictionaries(st.sampled_from(["alg", "kid", "crit", "b64", "typ", "enc"]), json_values).map(
        lambda value: b64(json.dumps(value).encode())
    ),
)


@settings(max_examples=300, deadline=None)
@given(segments, segments, st.binary(max_size=300).map(b64))
def test_structured_garbage_never_escapes(head: str, body: str, signature: str) -> None:
    token = f"{head}.{body}.{signature}"
    with contextlib.suppress(AuthenticationError):
        parsed = parse_compact(token)
        key = keyset().find(parsed.header.get("kid"), parsed.header["alg"])
        if key is not None:
            verify_signature(parsed, key, ALLOWED)
        validate_claims(parsed.claims, ClaimsPolicy(ISS, frozenset({"api"})), now=NOW)


# ------------------------------------------------------------------------------- signatures


def test_verify_signature_accepts_all_three_libraries() -> None:
    for library in ("jose", "pyjwt", "joserfc"):
        for alg in ("RS256", "ES256"):
            check(build_valid_token(minter, alg=alg, library=library))


def test_our_tokens_verify_in_pyjwt_and_joserfc() -> None:
    now_minter = TokenIssuer(iss=ISS, audience="api")
    token = sign(now_minter.claims(), JoseKey.from_jwk(rsa_jwk()))
    public = pyjwt.PyJWK(public_jwk(rsa_jwk()))
    decoded = pyjwt.decode(token, public.key, algorithms=["RS256"], audience="api")
    assert decoded["sub"] == "user-1"
    rfc_keys = RfcKeySet.import_key_set({"keys": [public_jwk(ec_jwk())]})
    ec_token = sign(now_minter.claims(), JoseKey.from_jwk(ec_jwk()))
    assert rfc_jwt.decode(ec_token, rfc_keys, algorithms=["ES256"]).claims["sub"] == "user-1"


def _flip(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 1
    return f"{head}.{body}.{b64(bytes(raw))}"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (build_wrong_key_token(minter), "signature is invalid"),
        (build_tampered_token(minter), "signature is invalid"),
        (_flip(build_valid_token(minter)), "signature is invalid"),
        (_flip(build_valid_token(minter, alg="ES256")), "signature is invalid"),
        (build_valid_token(minter).rsplit(".", 1)[0] + ".", "signature is invalid"),
        # cut mid-character: refused either as non-canonical base64url or as a bad signature
        (build_valid_token(minter)[:-20], "signature is invalid|malformed"),
        (build_valid_token(minter, alg="ES256")[:-10], "signature is invalid"),
        (build_hs256_confusion_token(minter), "algorithm"),
        (compact(header(kid="ec-1"), minter.claims()), "algorithm"),
        (compact(header(alg="RS384"), minter.claims(), alg="RS384"), "algorithm"),
    ],
)
def test_bad_signatures(token: str, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        check(token)


def test_hmac_key_is_refused_under_an_asymmetric_allow_list() -> None:
    secret = generate_private_jwk("HS256", kid="hs")
    key = JoseKey.from_jwk(secret)
    parsed = parse_compact(sign({"sub": "x", "exp": NOW + 60}, key))
    verify_signature(parsed, key, frozenset({"HS256"}))
    with pytest.raises(AuthenticationError, match="algorithm"):
        verify_signature(parsed, key, frozenset({"HS256", "RS256"}))


# ----------------------------------------------------------------------------------- claims

POLICY = ClaimsPolicy(ISS, frozenset({"api", "other"}), leeway=30)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": MISSING}, "no expiry"),
        ({"exp": None}, "expiry is invalid"),
        ({"exp": "1900000000"}, "expiry is invalid"),
        ({"exp": True}, "expiry is invalid"),
        ({"exp": float("inf")}, "expiry is invalid"),
        ({"exp": float("nan")}, "expiry is invalid"),
        ({"exp": 10**30}, "expiry is invalid"),
        ({"exp": [NOW + 60]}, "expiry is invalid"),
        ({"exp": NOW - 30}, "expired"),
        ({"exp": NOW - 3600}, "expired"),
        ({"nbf": NOW + 31}, "not valid yet"),
        ({"nbf": "0"}, "not-before time is invalid"),
        ({"nbf": None}, "not-before time is invalid"),
        ({"iat": NOW + 31}, "issued in the future"),
        ({"iat": False}, "issue time is invalid"),
        ({"iss": MISSING}, "issuer"),
        ({"iss": ISS + "/"}, "issuer"),
        ({"iss": [ISS]}, "issuer"),
        ({"aud": MISSING}, "audience is missing"),
        ({"aud": "nope"}, "not meant"),
        ({"aud": ["nope", "nada"]}, "not meant"),
        ({"aud": []}, "audience is missing"),
        ({"aud": ["api", 5]}, "audience is missing"),
        ({"aud": {"api": 1}}, "audience is missing"),
        ({"sub": MISSING}, "subject"),
        ({"sub": ""}, "subject"),
        ({"sub": 42}, "subject"),
        ({"sub": None}, "subject"),
    ],
)
def test_claims_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        validate_claims(minter.claims(**overrides), POLICY, now=NOW)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"exp": NOW - 29},  # within leeway
        {"exp": NOW + 0.5},
        {"nbf": NOW + 30, "iat": NOW + 30},
        {"aud": ["nope", "other"]},
        {"aud": "other"},
        {"nbf": MISSING, "iat": MISSING},
    ],
)
def test_claims_accepted(overrides: dict[str, Any]) -> None:
    validate_claims(minter.claims(**overrides), POLICY, now=NOW)


def test_optional_policies() -> None:
    lax = ClaimsPolicy(None, frozenset(), leeway=0, require_sub=False, any_audience=True)
    validate_claims({"exp": NOW + 1}, lax, now=NOW)
    validate_claims({"exp": NOW + 1, "aud": ["x"], "iss": "anyone"}, lax, now=NOW)
    with pytest.raises(AuthenticationError, match="expired"):
        validate_claims({"exp": NOW}, lax, now=NOW)
    with pytest.raises(AuthenticationError, match="audience"):
        validate_claims({"exp": NOW + 1, "aud": 5}, lax, now=NOW)
    with pytest.raises(AuthenticationError, match="subject"):
        validate_claims({"exp": NOW + 1, "sub": ""}, lax, now=NOW)


def test_a_token_with_aud_is_refused_when_no_audience_is_configured() -> None:
    """#12 item 5: an ``aud`` names some API; with none configured this one cannot be it."""
    policy = ClaimsPolicy(None, frozenset(), leeway=0)
    validate_claims({"exp": NOW + 1, "sub": "u"}, policy, now=NOW)  # no aud: fine
    for aud in ("api://other", ["api://other", "api://third"]):
        with pytest.raises(AuthenticationError, match="audience this API does not accept"):
            validate_claims({"exp": NOW + 1, "sub": "u", "aud": aud}, policy, now=NOW)


@pytest.mark.parametrize("leeway", [301, -1, float("nan"), float("inf"), True, "30"])
def test_leeway_is_bounded(leeway: Any) -> None:
    with pytest.raises(ConfigurationError, match="leeway"):
        ClaimsPolicy(ISS, frozenset(), leeway=leeway)


def test_leeway_bounds_are_inclusive() -> None:
    assert ClaimsPolicy(ISS, frozenset(), leeway=300).leeway == 300
    assert ClaimsPolicy(ISS, frozenset(), leeway=0).leeway == 0


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "sub"]), json_values))
def test_arbitrary_claims_only_ever_raise_authentication_error(claims: dict[str, Any]) -> None:
    with contextlib.suppress(AuthenticationError):
        validate_claims(claims, POLICY, now=NOW)
