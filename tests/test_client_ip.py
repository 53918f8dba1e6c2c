"""Client IP resolution: the socket peer unless a trusted proxy says otherwise, right to left."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import HTTPConnection

from fastapi_authgate import AuthGate
from fastapi_authgate.client_ip import ClientIPResolver, normalize_ip
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.settings import AuthGateSettings


def conn(peer: str | None, *headers: tuple[str, str]) -> HTTPConnection:
    return HTTPConnection(
        {
            "type": "http",
            "client": None if peer is None else (peer, 1234),
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
        }
    )


PROXY = "10.0.0.1"
trusted = ClientIPResolver(["10.0.0.0/8", "2001:db8:ffff::1"])


def test_without_proxies_headers_are_never_read() -> None:
    resolver = ClientIPResolver()
    c = conn("203.0.113.7", ("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=1.2.3.4"))
    assert resolver.resolve(c) == "203.0.113.7"
    assert resolver.key(c) == "203.0.113.7"


@pytest.mark.parametrize(
    ("peer", "resolved", "key"),
    [
        ("::ffff:198.51.100.4", "198.51.100.4", "198.51.100.4"),
        ("2001:DB8:0:0:1::7", "2001:db8::1:0:0:7", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::1", "fe80::/64"),
        ("testclient", "testclient", "testclient"),
    ],
)
def test_peers_are_normalised(peer: str, resolved: str, key: str) -> None:
    for resolver in (ClientIPResolver(), trusted):
        assert resolver.resolve(conn(peer)) == resolved
        assert resolver.key(conn(peer)) == key
    assert ClientIPResolver(ipv6_prefix=None).key(conn("2001:db8::1:0:7")) == "2001:db8::1:0:7"
    assert ClientIPResolver(ipv6_prefix=48).key(conn("2001:db8:1:2::7")) == "2001:db8:1::/48"


def test_no_client_in_scope() -> None:
    assert ClientIPResolver().resolve(conn(None)) == "unknown"
    assert trusted.resolve(conn(None)) == "unknown"


def test_untrusted_peer_headers_are_ignored() -> None:
    c = conn("203.0.113.7", ("X-Forwarded-For", "1.2.3.4"))
    assert trusted.resolve(c) == "203.0.113.7"


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ("198.51.100.1", "198.51.100.1"),
        ("198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),  # spoofed hop left of the client
        ("spoofed, 198.51.100.1", "198.51.100.1"),  # garbage beyond the client is never read
        ("10.0.0.3, 10.0.0.2", "10.0.0.3"),  # only proxies: the furthest one
        ("198.51.100.1:5555", "198.51.100.1"),
        ("[2001:db8::9]:443", "2001:db8::9"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("evil", PROXY),
        ("198.51.100.1, evil", PROXY),
        ("198.51.100.1,,10.0.0.2", PROXY),
        ("", PROXY),
        ("[2001:db8::9", PROXY),
    ],
)
def test_x_forwarded_for_walks_right_to_left(xff: str, expected: str) -> None:
    assert trusted.resolve(conn(PROXY, ("X-Forwarded-For", xff))) == expected


def test_several_x_forwarded_for_lines_are_one_list() -> None:
    c = conn(PROXY, ("X-Forwarded-For", "6.6.6.6, 198.51.100.1"), ("X-Forwarded-For", "10.0.0.2"))
    assert trusted.resolve(c) == "198.51.100.1"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ('For="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
        ('for=192.0.2.43, for="[2001:db8:ffff::1]"', "192.0.2.43"),  # the v6 hop is trusted
        ("for=6.6.6.6, for=192.0.2.43;by=_proxy, for=10.0.0.2", "192.0.2.43"),
        ('for="192.0.2.43:47011"', "192.0.2.43"),
        ("for=_hidden, for=192.0.2.43", "192.0.2.43"),  # an obfuscated hop left of the client
        ("for=_hidden", PROXY),  # the client itself is obfuscated: do not guess
        ("for=unknown", PROXY),
        ("proto=https", PROXY),  # no for= at all
        ('for="192.0.2.43', PROXY),  # unbalanced quote
        ("for=192.0.2.43;for=192.0.2.44", PROXY),
        ("for", PROXY),
        ("for=192.0.2.43 junk", PROXY),
        ('for="\\"192.0.2.43"', PROXY),
        ('for=1.1.1.1;host="a,b", for=192.0.2.43', "192.0.2.43"),  # commas inside quotes
    ],
)
def test_forwarded_walks_right_to_left(forwarded: str, expected: str) -> None:
    assert trusted.resolve(conn(PROXY, ("Forwarded", forwarded))) == expected


def test_auto_believes_both_headers_only_when_they_agree() -> None:
    agree = conn(PROXY, ("Forwarded", "for=192.0.2.43"), ("X-Forwarded-For", "192.0.2.43"))
    differ = conn(PROXY, ("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "192.0.2.43"))
    assert trusted.resolve(agree) == "192.0.2.43"
    assert trusted.resolve(differ) == PROXY
    xff_only = ClientIPResolver(["10.0.0.0/8"], header="x-forwarded-for")
    assert xff_only.resolve(differ) == "192.0.2.43"
    forwarded_only = ClientIPResolver(["10.0.0.0/8"], header="forwarded")
    assert forwarded_only.resolve(differ) == "6.6.6.6"
    assert forwarded_only.resolve(conn(PROXY, ("X-Forwarded-For", "192.0.2.43"))) == PROXY


def test_trusted_v6_proxy_and_mapped_peer() -> None:
    c = conn("::ffff:10.0.0.1", ("X-Forwarded-For", "198.51.100.1"))
    assert trusted.resolve(c) == "198.51.100.1"
    c6 = conn("2001:db8:ffff::1", ("X-Forwarded-For", "2001:db8:1::5"))
    assert trusted.resolve(c6) == "2001:db8:1::5"
    assert trusted.key(c6) == "2001:db8:1::/64"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "proxy.internal", "", "10.0.0.1/8/8"])
def test_bad_trusted_proxies_fail_at_construction(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_TRUSTED_PROXIES"):
        ClientIPResolver([entry])


def test_other_bad_options() -> None:
    with pytest.raises(ConfigurationError):
        ClientIPResolver(ipv6_prefix=0)
    with pytest.raises(ConfigurationError):
        ClientIPResolver(header="x-real-ip")  # type: ignore[arg-type]


def test_normalize_ip() -> None:
    assert normalize_ip("::FFFF:1.2.3.4") == "1.2.3.4"
    assert normalize_ip("not an ip") == "not an ip"
    assert ClientIPResolver([" 10.0.0.1 ", "192.168.0.0/16"]).trusted_proxies == (
        "10.0.0.1",
        "192.168.0.0/16",
    )


_ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["unknown", "_hidden", "[2001:db8::1]:443", "1.2.3.4:80", '"[::1]"', ""]),
)
_header_text = st.one_of(
    st.lists(_ip_text, max_size=5).map(", ".join),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(xff=_header_text, forwarded=_header_text, peer_trusted=st.booleans())
@example(xff="10.0.0.0", forwarded="", peer_trusted=True)  # every hop trusted: an internal caller
@example(xff="10.0.0.9, 198.51.100.7", forwarded="", peer_trusted=True)
def test_arbitrary_forwarding_headers_never_raise_and_never_pick_a_trusted_hop(
    xff: str, forwarded: str, peer_trusted: bool
) -> None:
    peer = PROXY if peer_trusted else "203.0.113.50"
    headers = [("X-Forwarded-For", xff), ("Forwarded", "for=" + forwarded)]
    resolved = trusted.resolve(conn(peer, *headers))
    if not peer_trusted:
        assert resolved == peer  # an untrusted peer's headers are never read
        return
    # Either the trusted peer itself (headers malformed, absent or disagreeing) or a real address
    # taken from them, never arbitrary text. That address is untrusted, unless every hop of the
    # chain it came from is a trusted proxy: then the leftmost hop is an internal caller.
    if resolved != peer:
        address = ipaddress.ip_address(resolved)
        assert str(address) == resolved
        if trusted.is_trusted(address):
            chains = [_hops(xff), _hops(forwarded)]
            assert any(
                chain and chain[0] == address and all(trusted.is_trusted(hop) for hop in chain)
                for chain in chains
            ), (xff, forwarded, resolved)


def _hops(header: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The header's hops as addresses (ports, brackets and quotes removed); [] if any is not one."""
    hops = []
    for raw in header.split(","):
        text = raw.strip().strip('"')
        bracketed = re.fullmatch(r"\[([^\]]*)\](?::\d+)?", text)
        if bracketed:
            text = bracketed.group(1)
        elif re.fullmatch(r"[\d.]+:\d+", text):
            text = text.rsplit(":", 1)[0]
        try:
            hops.append(ipaddress.ip_address(text))
        except ValueError:
            return []
    return hops


@pytest.mark.parametrize("everything", ["0.0.0.0/0", "::/0"])
def test_trusting_every_address_as_a_proxy_is_refused(everything: str) -> None:
    """``0.0.0.0/0`` would believe ``X-Forwarded-For`` from any client: each hop is "trusted", so
    the walk ends at the leftmost entry, which the client wrote, and every ``key="ip"`` limit and
    reported IP becomes the client's choice."""
    with pytest.raises(ConfigurationError, match=r"AUTHGATE_TRUSTED_PROXIES.*trusts every address"):
        AuthGate.from_settings(AuthGateSettings(trusted_proxies=[everything]))
    assert ClientIPResolver(["10.0.0.0/8", "::1"]).trusted_proxies == ("::1", "10.0.0.0/8")
