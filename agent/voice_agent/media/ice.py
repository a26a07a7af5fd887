"""Which addresses a peer offers as ICE host candidates, and which address it announces.

aioice gathers on every interface address except loopback, and has no way to narrow that per
connection. Operators need to: a pod with several interfaces must offer only the one browsers can
reach, a `hostNetwork` agent or one behind a 1:1 NAT must announce an address it does not own,
and tests must keep media on loopback. So the choice is a `HostCandidatePolicy`, applied to one
gathering at a time through a context variable that aioice's address lookup consults
(`gathering_with`), and the announced address is written into the SDP the client receives
(`announce`), the way mediasoup's `announcedIp` and LiveKit's `node_ip` do. Configuration:
docs/configuration.md ("ICE host candidates").
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aioice.ice
import ifaddr

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Scope = Literal["loopback", "private", "public"]


class IcePolicyError(ValueError):
    """A host-candidate setting that cannot work; the message says which value and why."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """IPs or CIDRs ("10.0.0.0/8", "127.0.0.1", "::1") -> networks; a bad one raises with its text."""
    out: list[IPNetwork] = []
    for raw in values:
        text = raw.strip()
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise IcePolicyError(f"{text!r} is not an IP address or CIDR") from None
    return tuple(out)


def parse_announced(value: str) -> IPAddress:
    """An announced address must be one concrete IP a client can send to."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise IcePolicyError(f"{value.strip()!r} is not an IP address") from None
    if address.is_unspecified or address.is_multicast:
        raise IcePolicyError(f"{address} cannot be announced (unspecified or multicast)")
    return address


def scope_of(host: str) -> Scope:
    """Where an address lives, for the selected-pair metric and the test guard."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "public"  # a name (mDNS .local) is resolved elsewhere: never assume it is loopback
    if address.is_loopback:
        return "loopback"
    return "private" if address.is_private else "public"


@dataclass(frozen=True)
class HostCandidatePolicy:
    """Include/exclude lists over interfaces and addresses, and an optional announced address.

    Empty include lists mean "all", as aioice does today, and loopback is then left out; loopback
    is gathered only when named: an include network that is itself loopback, or its interface by
    name. Excludes win over includes.
    """

    interfaces: tuple[str, ...] = ()
    exclude_interfaces: tuple[str, ...] = ()
    addresses: tuple[IPNetwork, ...] = ()
    exclude_addresses: tuple[IPNetwork, ...] = ()
    announced: IPAddress | None = None

    @property
    def narrows(self) -> bool:
        return bool(self.interfaces or self.exclude_interfaces or self.addresses or self.exclude_addresses)

    def allows(self, interface: str, address: IPAddress) -> bool:
        if interface in self.exclude_interfaces or any(address in n for n in self.exclude_addresses):
            return False
        named_interface = interface in self.interfaces
        if self.interfaces and not named_interface:
            return False
        in_addresses = [n for n in self.addresses if address in n]
        if self.addresses and not in_addresses:
            return False
        if address.is_loopback:
            return named_interface or any(n.is_loopback for n in in_addresses)
        return True

    def select(self, adapters: Iterable[Any], use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        """Addresses to gather on, from ifaddr adapters (IPv6 link-local left out, as aioice does)."""
        out: list[str] = []
        for adapter in adapters:
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    if not use_ipv4:
                        continue
                    text = ip.ip
                else:
                    text, _flow, scope_id = ip.ip
                    if not use_ipv6 or scope_id != 0:
                        continue
                address = ipaddress.ip_address(text)
                if address.is_link_local and address.version == 6:
                    continue
                if self.allows(adapter.nice_name, address) and text not in out:
                    out.append(text)
        return out

    def check(self, adapters: Iterable[Any]) -> None:
        """Fail at start-up, naming the value, when the policy names what is not there or selects nothing."""
        adapters = list(adapters)
        names = {a.nice_name for a in adapters}
        missing = [i for i in self.interfaces if i not in names]
        if missing:
            raise IcePolicyError(
                f"interface {missing[0]!r} not found (this host has: {', '.join(sorted(names)) or 'none'})"
            )
        if self.narrows and not self.select(adapters):
            raise IcePolicyError("no address of this host matches the ICE host-candidate settings")

    def announce(self, sdp: str, gathered: Iterable[str]) -> str:
        """The SDP with gathered host addresses replaced by the announced one (same family only)."""
        if self.announced is None:
            return sdp
        family = {
            h for h in gathered if ipaddress.ip_address(h.split("%", 1)[0]).version == self.announced.version
        }
        if not family:
            return sdp
        new = str(self.announced)
        lines = []
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:"):
                parts = line.split(" ")
                if len(parts) > 7 and parts[7] == "host" and parts[4] in family:
                    parts[4] = new
                    line = " ".join(parts)
            elif line.startswith("c=IN IP"):
                parts = line.split(" ")
                if len(parts) == 3 and parts[2] in family:
                    line = f"c=IN IP{self.announced.version} {new}"
            lines.append(line)
        return "\r\n".join(lines)


LOOPBACK_ONLY = HostCandidatePolicy(addresses=parse_networks(["127.0.0.1"]))

_policy: contextvars.ContextVar[HostCandidatePolicy | None] = contextvars.ContextVar(
    "voice_ice_policy", default=None
)
_aioice_lookup: Callable[[bool, bool], list[str]] | None = None


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _policy.get()
    if policy is None or not policy.narrows:
        assert _aioice_lookup is not None
        return _aioice_lookup(use_ipv4, use_ipv6)
    return policy.select(ifaddr.get_adapters(), use_ipv4=use_ipv4, use_ipv6=use_ipv6)


def _install() -> None:
    """Route aioice's address lookup through the policy of the gathering in progress (once)."""
    global _aioice_lookup
    if _aioice_lookup is None:
        _aioice_lookup = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def gathering_with(policy: HostCandidatePolicy | None) -> Iterator[None]:
    """Gathering started inside this block (aiortc's setLocalDescription) follows `policy`.

    A context variable, not a global: the tasks aiortc starts to gather copy the context, so two
    peers in one process (an agent and a test client) can each have their own policy.
    """
    _install()
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


def selected_pair(pc: Any) -> tuple[Any, Any] | None:
    """(local, remote) aioice candidates of the pair ICE chose for the first transport, if any.

    aiortc exposes no selected pair, so this reads aioice's nominated pairs; it returns None rather
    than fail if that private state ever changes shape.
    """
    for transceiver in pc.getTransceivers():
        dtls = getattr(transceiver.receiver, "transport", None)
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        nominated = getattr(connection, "_nominated", None)
        if isinstance(nominated, dict) and nominated:
            pair = nominated[min(nominated)]
            return pair.local_candidate, pair.remote_candidate
    return None
