"""Client tokens offline: round trips with the fake (online) and with PyJWT, and every forgery."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.providers.qyzar import (
    InvalidMetadataError,
    QyzarClient,
    create_client_token,
    normalize_client_token_metadata,
    verify_client_token,
)
from tests.providers.qyzar_support import Served, client, qyzar, served_qyzar

__all__ = ["client", "qyzar", "served_qyzar"]

SECRET = "s" * 20 + "0123456789abcdefghij"
PROJECT = "proj_1"
NOW = 1_800_000_000.0


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iss": "qyzar",
        "aud": PROJECT,
        "iat": int(NOW),
        "exp": int(NOW) + 900,
        "jti": "j1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.anyio
async def test_offline_token_verifies_online_and_online_offline(
    qyzar: Served, client: QyzarClient
) -> None:
    session = qyzar.fake.create_session()
    offline = create_client_token(
        qyzar.fake.project_secret,
        qyzar.fake.project_id,
        session_id=session.session_id,
        metadata={"identifier": "u1"},
    )
    online = await client.verify_client_token(offline.client_token)
    assert (online.valid, online.session_id, dict(online.metadata)) == (
        True,
        session.session_id,
        {"identifier": "u1"},
    )
    minted = await client.create_client_token(metadata={"identifier": "u2"})
    claims = verify_client_token(
        minted.client_token, qyzar.fake.project_secret, qyzar.fake.project_id
    )
    assert claims.metadata == {"identifier": "u2"} and claims.session_id is None


def test_pyjwt_agrees_both_ways() -> None:
    minted = create_client_token(SECRET, PROJECT, session_id="qs_1", now=NOW, ttl=60)
    decoded = jwt.decode(
        minted.client_token,
        SECRET,
        algorithms=["HS256"],
        audience=PROJECT,
        issuer="qyzar",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded["sid"] == "qs_1" and decoded["exp"] == int(NOW) + 60
    header = jwt.get_unverified_header(minted.client_token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    foreign = jwt.encode(_claims(sid="qs_2", md={"k": [1, 2]}), SECRET, algorithm="HS256")
    verified = verify_client_token(foreign, SECRET, PROJECT, now=NOW)
    assert verified.session_id == "qs_2" and verified.metadata == {"k": [1, 2]}
    assert verified.token_id == "j1"


def test_session_binding_caps_the_lifetime() -> None:
    minted = create_client_token(
        SECRET, PROJECT, session_id="qs", session_expires_at=NOW + 60, now=NOW
    )
    assert minted.expires_at.timestamp() == NOW + 60
    loose = create_client_token(SECRET, PROJECT, now=NOW)
    assert loose.expires_at.timestamp() == NOW + 900


def _swap_alg(token: str, alg: str) -> str:
    _head, body, sig = token.split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return header.rstrip(b"=").decode() + "." + body + "." + sig


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    "case",
    [
        "tampered_payload",
        "tampered_signature",
        "expired",
        "wrong_project",
        "wrong_issuer",
        "no_aud",
        "no_exp",
        "other_secret",
        "alg_none",
        "alg_hs512",
        "alg_rs256",
        "header_swapped",
        "bad_sid",
        "md_not_object",
        "oversized",
        "jwe",
        "future_iat",
    ],
)
def test_forged_and_wrong_tokens_are_refused(case: str) -> None:
    good = create_client_token(SECRET, PROJECT, now=NOW).client_token
    token: str
    if case == "tampered_payload":
        head, body, sig = good.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        payload["aud"] = PROJECT  # same content, re-encoded with a different jti
        payload["jti"] = "forged"
        encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        token = f"{head}.{encoded}.{sig}"
    elif case == "tampered_signature":
        head, body, sig = good.split(".")
        token = f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    elif case == "expired":
        token = create_client_token(SECRET, PROJECT, now=NOW - 1000).client_token
    elif case == "wrong_project":
        token = create_client_token(SECRET, "proj_2", now=NOW).client_token
    elif case == "wrong_issuer":
        token = jwt.encode(_claims(iss="someone"), SECRET, algorithm="HS256")
    elif case == "no_aud":
        token = jwt.encode(_claims(aud=None), SECRET, algorithm="HS256")
    elif case == "no_exp":
        token = jwt.encode(_claims(exp=None), SECRET, algorithm="HS256")
    elif case == "other_secret":
        token = create_client_token("x" * 40, PROJECT, now=NOW).client_token
    elif case == "alg_none":
        token = _swap_alg(good, "none").rsplit(".", 1)[0] + "."
    elif case == "alg_hs512":
        token = jwt.encode(_claims(), SECRET + SECRET, algorithm="HS512")
    elif case == "alg_rs256":
        token = jwt.encode(_claims(), _rsa_pem(), algorithm="RS256")
    elif case == "header_swapped":
        token = _swap_alg(good, "HS384")
    elif case == "bad_sid":
        token = jwt.encode(_claims(sid=42), SECRET, algorithm="HS256")
    elif case == "md_not_object":
        token = jwt.encode(_claims(md=["a"]), SECRET, algorithm="HS256")
    elif case == "oversized":
        token = jwt.encode(_claims(md={"pad": "x" * 9000}), SECRET, algorithm="HS256")
    elif case == "jwe":
        token = "a.b.c.d.e"
    else:
        token = jwt.encode(_claims(iat=int(NOW) + 3600), SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        verify_client_token(token, SECRET, PROJECT, now=NOW)
    # the untouched token still verifies, so each refusal is about its one change
    assert verify_client_token(good, SECRET, PROJECT, now=NOW).project_id == PROJECT


def test_short_or_empty_secrets_cannot_be_used_offline() -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__PROJECT_SECRET"):
        create_client_token("short", PROJECT)
    with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__PROJECT_SECRET"):
        verify_client_token("a.b.c", "", PROJECT)
    with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__PROJECT_SECRET"):
        create_client_token(_rsa_pem(), PROJECT)  # PEM text is never an HMAC secret


def test_leeway_allows_bounded_skew() -> None:
    token = create_client_token(SECRET, PROJECT, now=NOW, ttl=10).client_token
    with pytest.raises(AuthenticationError):
        verify_client_token(token, SECRET, PROJECT, now=NOW + 15)
    assert verify_client_token(token, SECRET, PROJECT, now=NOW + 15, leeway=30)


def test_metadata_normalisation() -> None:
    assert normalize_client_token_metadata(None) == {}
    assert normalize_client_token_metadata(
        {"email": " Bob@X.IO ", "phone": "+4915112345678", "a": {"b": {"c": [1]}}}
    ) == {"email": "bob@x.io", "phone": "+4915112345678", "a": {"b": {"c": [1]}}}
    source = {"email": "A@B.C"}
    normalize_client_token_metadata(source)
    assert source == {"email": "A@B.C"}  # the input is left alone


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"email": 5}, "email"),
        ({"email": "not-an-address"}, "email"),
        ({"phone": "+12"}, "phone"),
        ({"phone": "4915112345678"}, "phone"),
        ({"identifier": ""}, "identifier"),
        ({"": 1}, "key"),
        ({"k" * 65: 1}, "key"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "a.b.c.d"),
        ({"a": [[[[1]]]]}, "a"),
        ({"f": float("nan")}, "f"),
        ({"o": object()}, "o"),
        ({"big": "x" * 5000}, "4096"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidMetadataError, match=field.replace(".", r"\.").replace("[", r"\[")):
        normalize_client_token_metadata(metadata)


def test_wall_clock_default() -> None:
    minted = create_client_token(SECRET, PROJECT)
    assert abs(minted.expires_at.timestamp() - (time.time() + 900)) < 5
    assert verify_client_token(minted.client_token, SECRET, PROJECT).expires_at == minted.expires_at
