"""Host-candidate policy: which addresses are gathered, what is announced, what fails at start."""

from __future__ import annotations

import ipaddress

import pytest
from ifaddr import IP, Adapter

from tests.support.procs import off_loopback
from voice_agent.media.ice import (
    LOOPBACK_ONLY,
    HostCandidatePolicy,
    IcePolicyError,
    parse_announced,
    parse_networks,
    scope_of,
)
from voice_agent.settings import ConfigError, load_settings

HOST = [
    Adapter("lo", "lo", [IP("127.0.0.1", 8, "lo"), IP(("::1", 0, 0), 128, "lo")]),
    Adapter("eth0", "eth0", [IP("10.1.2.3", 24, "eth0"), IP(("fe80::1", 0, 2), 64, "eth0")]),
    Adapter("net1", "net1", [IP("192.168.7.9", 24, "net1"), IP(("2001:db8::5", 0, 0), 64, "net1")]),
]


def policy(**kw: object) -> HostCandidatePolicy:
    for key in ("addresses", "exclude_addresses"):
        if key in kw:
            kw[key] = parse_networks(kw[key])  # type: ignore[arg-type]
    return HostCandidatePolicy(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, ["10.1.2.3", "192.168.7.9", "2001:db8::5"]),  # aioice's default: no loopback, no link-local
        ({"addresses": ["127.0.0.1"]}, ["127.0.0.1"]),
        ({"addresses": ["::1", "127.0.0.0/8"]}, ["127.0.0.1", "::1"]),
        ({"addresses": ["0.0.0.0/0"]}, ["10.1.2.3", "192.168.7.9"]),  # loopback only when named
        ({"interfaces": ["lo"]}, ["127.0.0.1", "::1"]),
        ({"interfaces": ["net1"]}, ["192.168.7.9", "2001:db8::5"]),
        ({"exclude_interfaces": ["eth0"]}, ["192.168.7.9", "2001:db8::5"]),
        ({"addresses": ["10.0.0.0/8", "192.168.0.0/16"], "exclude_addresses": ["192.168.7.9"]}, ["10.1.2.3"]),
        ({"interfaces": ["net1"], "addresses": ["2001:db8::/32"]}, ["2001:db8::5"]),
    ],
)
def test_policy_selects(kw: dict[str, object], expected: list[str]) -> None:
    assert policy(**kw).select(HOST) == expected


def test_policy_respects_the_address_families_aioice_asks_for() -> None:
    assert policy(interfaces=["net1"]).select(HOST, use_ipv4=True, use_ipv6=False) == ["192.168.7.9"]
    assert LOOPBACK_ONLY.select(HOST, use_ipv4=False, use_ipv6=True) == []


def test_check_names_a_missing_interface_and_an_empty_selection() -> None:
    with pytest.raises(IcePolicyError, match=r"interface 'eth9' not found \(this host has: eth0, lo, net1\)"):
        policy(interfaces=["eth9"]).check(HOST)
    with pytest.raises(IcePolicyError, match="no address of this host matches"):
        policy(addresses=["172.16.0.0/12"]).check(HOST)
    policy(addresses=["10.0.0.0/8"]).check(HOST)


@pytest.mark.parametrize("bad", ["10.0.0.300", "example.com", "10.0.0.0/33", ""])
def test_bad_networks_are_refused_with_their_text(bad: str) -> None:
    with pytest.raises(IcePolicyError, match="is not an IP address or CIDR"):
        parse_networks([bad])


@pytest.mark.parametrize("bad", ["0.0.0.0", "::", "224.0.0.1", "node", "10.0.0.0/8"])
def test_announced_must_be_one_concrete_address(bad: str) -> None:
    with pytest.raises(IcePolicyError):
        parse_announced(bad)


ANSWER = "\r\n".join(
    [
        "v=0",
        "c=IN IP4 10.1.2.3",
        "a=candidate:1 1 udp 2130706431 10.1.2.3 40000 typ host",
        "a=candidate:2 1 udp 2130706431 2001:db8::5 40001 typ host",
        "a=candidate:3 1 udp 1694498815 198.51.100.4 40002 typ srflx raddr 10.1.2.3 rport 40000",
        "a=candidate:4 1 udp 16777215 10.1.2.3 50000 typ relay raddr 10.1.2.3 rport 40003",
        "",
    ]
)


def test_announce_rewrites_host_candidates_of_its_family_only() -> None:
    announced = policy(announced=ipaddress.ip_address("203.0.113.7"))
    out = announced.announce(ANSWER, ["10.1.2.3", "2001:db8::5"]).split("\r\n")
    assert out[1] == "c=IN IP4 203.0.113.7"
    assert out[2] == "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host"
    assert out[3:6] == ANSWER.split("\r\n")[3:6]  # IPv6 host, srflx and relay candidates unchanged
    assert HostCandidatePolicy().announce(ANSWER, ["10.1.2.3"]) == ANSWER


def test_scopes() -> None:
    assert [scope_of(h) for h in ("127.0.0.1", "::1", "10.1.2.3", "fd00::1", "8.8.8.8", "x.local")] == [
        "loopback",
        "loopback",
        "private",
        "private",
        "public",
        "public",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICE_ICE_ADDRESSES": "10.0.0.300"}, "invalid setting VOICE_ICE_ADDRESSES: '10.0.0.300' is not"),
        ({"VOICE_ICE_EXCLUDE_ADDRESSES": "x"}, "invalid setting VOICE_ICE_EXCLUDE_ADDRESSES: 'x' is not"),
        ({"VOICE_ICE_ANNOUNCED_ADDRESS": "0.0.0.0"}, "invalid setting VOICE_ICE_ANNOUNCED_ADDRESS: 0.0.0.0"),
        ({"VOICE_ICE_INTERFACES": "no-such-nic0"}, "interface 'no-such-nic0' not found"),
        ({"VOICE_ICE_ADDRESSES": "240.0.0.0/4"}, "no address of this host matches"),  # reserved: on no host
    ],
)
def test_bad_settings_stop_start_up_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("VOICE_ICE_ADDRESSES", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_settings_read_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_ICE_ADDRESSES", " 127.0.0.1 , ::1 ")
    monkeypatch.setenv("VOICE_ICE_EXCLUDE_INTERFACES", "docker0,")
    ice = load_settings().ice_policy
    assert [str(n) for n in ice.addresses] == ["127.0.0.1/32", "::1/128"]
    assert ice.exclude_interfaces == ("docker0",)


def test_guard_refuses_any_end_off_loopback() -> None:
    pairs = [
        {"local": "loopback", "remote": "loopback"},
        {"local": "loopback", "remote": "private"},
        {"local": "public", "remote": "loopback"},
    ]
    assert off_loopback(pairs) == pairs[1:]
