"""The per-session socket cap as the signaling layer uses it (unit: no process, no sockets)."""

from __future__ import annotations

from voice_agent.providers.base import Providers
from voice_agent.sessions.admission import LocalAdmission
from voice_agent.sessions.manager import CallManager
from voice_agent.settings import Settings
from voice_agent.store import MemorySessionStore


def manager(cap: int) -> CallManager:
    settings, store = Settings(max_sockets_per_session=cap), MemorySessionStore()
    return CallManager(settings, store, Providers.__new__(Providers), LocalAdmission(settings, store))


def test_sockets_beyond_the_cap_are_refused_per_session_and_slots_come_back() -> None:
    m = manager(2)
    assert m.socket_opened("a") and m.socket_opened("a")
    assert not m.socket_opened("a"), "third concurrent socket of one session"
    assert m.socket_opened("b"), "the cap is per session"
    m.socket_closed("a")
    assert m.socket_opened("a"), "a closed socket frees its slot"
    for _ in range(2):
        m.socket_closed("a")
    m.socket_closed("b")
    assert m.sockets == {}, "no entry is kept for sessions without sockets"
    m.socket_closed("never-opened")
    assert m.sockets == {}
