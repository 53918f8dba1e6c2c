"""Contexts are frozen all the way down: a cached one cannot be changed by a route (#12: 18)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_authgate import AuthContext, AuthGate, Credentials, User, require_user
from fastapi_authgate.context import FrozenDict, FrozenList, freeze_claims, freeze_mapping
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.verifiers.jwt_context import claim_scopes


def test_nested_values_are_frozen() -> None:
    context = AuthContext(
        subject="u",
        provider="p",
        credential="bearer",
        claims={"roles": ["a", ["b"]], "org": {"id": "o", "tags": ["x"]}, "set": {1}},
        user=User(id="u", metadata={"plan": {"features": ["f"]}}),
    )
    roles = context.claims["roles"]
    assert roles == ["a", ["b"]]  # still equal to the lists it came from
    changes: list[Callable[[], object]] = [
        lambda: roles.append("admin"),
        lambda: roles[1].append("c"),
        lambda: roles.__setitem__(0, "admin"),
        lambda: roles.extend(["x"]),
        lambda: roles.sort(),
        lambda: context.claims["org"].__setitem__("id", "other"),
        lambda: context.claims["org"].update(id="other"),
        lambda: context.claims["org"].pop("id"),
        lambda: context.claims["org"]["tags"].clear(),
    ]
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change()
    with pytest.raises(TypeError):
        roles += ["x"]
    assert context.claims["org"] == {"id": "o", "tags": ["x"]}
    assert json.loads(json.dumps(dict(context.claims), default=sorted)) == {
        "roles": ["a", ["b"]],
        "org": {"id": "o", "tags": ["x"]},
        "set": [1],
    }
    assert copy.deepcopy(context.claims["org"]) == {"id": "o", "tags": ["x"]}
    assert context.claims["set"] == frozenset({1})
    assert context.user is not None
    with pytest.raises(TypeError):
        context.user.metadata["plan"]["features"] = []
    with pytest.raises(TypeError):
        context.user.metadata["plan"]["features"].append("g")


def test_the_callers_data_is_copied_not_frozen_in_place() -> None:
    roles = ["a"]
    claims: dict[str, Any] = {"roles": roles}
    context = AuthContext(subject="u", provider="p", credential="bearer", claims=claims)
    roles.append("admin")  # the caller's list changes; the context does not
    claims["new"] = 1
    assert context.claims == {"roles": ["a"]}


def test_freezing_twice_costs_no_copy() -> None:
    frozen = freeze_mapping({"roles": ["a"], "n": 1})
    assert freeze_mapping(frozen) is frozen
    # a read-only view of a dict that still holds a list is not trusted as frozen
    shallow = MappingProxyType({"roles": ["a"]})
    refrozen = freeze_mapping(shallow)
    assert refrozen is not shallow and type(refrozen["roles"]) is FrozenList


def test_freeze_claims_keeps_scalars_and_freezes_the_rest() -> None:
    claims: dict[str, Any] = {"sub": "u", "exp": 1, "roles": ["a"], "org": {"ids": [1]}}
    frozen = freeze_claims(claims)
    assert type(frozen) is MappingProxyType
    assert frozen == {"sub": "u", "exp": 1, "roles": ["a"], "org": {"ids": [1]}}
    assert type(frozen["org"]) is FrozenDict and type(frozen["org"]["ids"]) is FrozenList
    assert freeze_mapping(frozen) is frozen


def test_a_route_cannot_change_what_later_requests_see() -> None:
    issuer = DevIssuer()
    gate = AuthGate(issuer.verifier())
    app = FastAPI()
    gate.install(app)

    @app.get("/tamper")
    async def tamper(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        outcome = "changed"
        try:
            auth.claims["roles"].append("admin")
        except TypeError:
            outcome = "refused"
        try:
            auth.claims["org"]["role"] = "owner"
        except TypeError:
            outcome += "+refused"
        return {"outcome": outcome, "roles": list(auth.claims["roles"])}

    token = issuer.issue("alice", roles=["reader"], org={"role": "member"})
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        first = client.get("/tamper", headers=headers).json()
        second = client.get("/tamper", headers=headers).json()  # served from the token cache
    assert first == {"outcome": "refused+refused", "roles": ["reader"]}
    assert second == first


@pytest.mark.anyio
async def test_cached_contexts_share_claim_names_and_equal_scope_sets() -> None:
    # a cached token keeps its context until it expires; names every token carries and scope
    # sets that many tokens share are kept once, not once per token
    issuer = DevIssuer(audience="https://api.example")
    verifier = issuer.verifier()
    first = await verifier.verify(Credentials(bearer=issuer.issue("ann", scopes=["read", "b"])))
    second = await verifier.verify(Credentials(bearer=issuer.issue("bob", scopes=["b", "read"])))
    assert first is not None and second is not None
    assert first.scopes == {"read", "b"} and first.scopes is second.scopes
    for name in ("sub", "exp", "iss", "jti"):
        (a,) = (key for key in first.claims if key == name)
        (b,) = (key for key in second.claims if key == name)
        assert a is b, name
    assert first.claims["sub"] == "ann" and second.claims["sub"] == "bob"
    # the issuer and audience strings are the verifier's own, not one copy per token
    assert first.claims["iss"] is second.claims["iss"] is verifier.issuer
    assert first.claims["aud"] == issuer.audience and first.claims["aud"] is second.claims["aud"]


def test_freeze_claims_keeps_unusual_names_as_they_are() -> None:
    claims = {"https://example.com/tenant": "t1", "exp": 1, "x-\u00e9": [1]}
    frozen = freeze_claims(dict(claims))
    assert frozen == claims and list(frozen) == list(claims)


@pytest.mark.anyio
async def test_a_verified_context_has_its_expiry_and_equals_one_built_by_hand() -> None:
    issuer = DevIssuer()
    token = issuer.issue("ann", scopes=["read"], ttl=600)
    context = await issuer.verifier().verify(Credentials(bearer=token))
    assert context is not None
    by_hand = AuthContext(
        subject="ann",
        provider=context.provider,
        credential="bearer",
        scopes=frozenset({"read"}),
        claims=dict(context.claims),
        expires_at=datetime.fromtimestamp(context.claims["exp"], tz=UTC),
    )
    assert context == by_hand and repr(context) == repr(by_hand)
    assert context.expires_at == by_hand.expires_at and context.expires_at is context.expires_at
    with pytest.raises(AttributeError, match="no attribute 'expiry'"):
        context.expiry  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(FrozenInstanceError):
        context.expires_at = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"scope": "read write"}, {"read", "write"}),
        ({"scope": "  read   read "}, {"read"}),
        ({"scope": ""}, set()),
        ({"scope": "read", "scp": "write"}, {"read", "write"}),
        ({"scope": "read", "permissions": ["write", "", 3]}, {"read", "write"}),
        ({"permissions": ["write"], "scp": "read"}, {"read", "write"}),
        ({"scp": ["a"], "permissions": "b c"}, {"a", "b", "c"}),
        ({"scope": 5, "scp": "read"}, {"read"}),
        ({"scope": "read", "scp": {"write": True}}, {"read"}),
        ({"other": "read"}, set()),
    ],
)
def test_scopes_are_the_union_of_every_scope_claim(
    claims: dict[str, Any], expected: set[str]
) -> None:
    # a lone scope string is remembered by its text; asked twice, each mix must still give the
    # union of all three claims, never only the remembered string's set
    for _ in range(2):
        scopes = claim_scopes(freeze_claims(dict(claims)), ("scope", "scp", "permissions"))
        assert scopes == expected and type(scopes) is frozenset
