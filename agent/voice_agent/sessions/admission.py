"""Admission: where a session is placed, how a session not live here is found, how records end.

The manager owns this agent's calls; an `Admission` decides the rest, given to the manager when
it is built. `LocalAdmission` is one agent with its own store: sessions are placed here or
refused. The pooled version (pool/, with Redis) places sessions anywhere in the pool, relays a
socket to the agent that runs its session, and claims sessions whose owner died.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voice_agent.protocol.sessions import SessionRecord
from voice_agent.protocol.signaling import AnyClientMessage
from voice_agent.settings import Settings
from voice_agent.store.base import SessionStore

if TYPE_CHECKING:
    from voice_agent.sessions.call import Call
    from voice_agent.sessions.connection import ClientConnection

log = logging.getLogger(__name__)


class CapacityError(Exception):
    """No room for another session here; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Edge(Protocol):
    """A client socket relayed to the agent that runs its session."""

    async def forward(self, msg: AnyClientMessage) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class RemoteOwner:
    """The session is live on another agent: relay the client's signaling to it."""

    agent_id: str
    # Opens the relay for one client socket; None when the owner cannot be reached.
    open_edge: Callable[[str, ClientConnection], Awaitable[Edge | None]]


class CallHost(Protocol):
    """This agent's calls as admission and the pool relay see them (the manager implements it)."""

    @property
    def lock(self) -> asyncio.Lock:
        """Held while the set of live calls is checked and changed."""
        ...

    def live(self, session_id: str) -> Call | None: ...

    def running(self) -> list[str]: ...

    def check_room(self) -> None:
        """CapacityError when this agent takes no more calls (draining, or full)."""

    async def start_call(self, record: SessionRecord) -> Call: ...

    async def open_call(self, session_id: str) -> Call | RemoteOwner | None: ...

    async def adopt(self, session_id: str) -> None: ...

    async def end_local(self, session_id: str) -> None: ...

    async def end_session(self, session_id: str) -> bool: ...

    def records_lost(self, session_ids: list[str]) -> None: ...


class Admission(Protocol):
    async def start(self, host: CallHost) -> None:
        """Before the first session (the pooled version joins the pool here)."""

    async def close(self) -> None: ...

    async def create(self, host: CallHost) -> SessionRecord:
        """A new session, placed here (its call started) or elsewhere; CapacityError when there is no room."""
        ...

    async def resume(self, host: CallHost, session_id: str) -> Call | RemoteOwner | None:
        """A session not live here: resumed here, live elsewhere, or None when there is no such session."""
        ...

    async def released(self, session_id: str) -> None:
        """The call of this session stopped here (its slot is free)."""

    async def end(self, session_id: str) -> bool:
        """End the session's record (wherever it runs); False when there was none."""
        ...

    async def draining(self) -> None:
        """This agent stops taking sessions: tell whoever places them."""

    async def room_elsewhere(self) -> int:
        """Calls a draining agent may move now: free slots on the other agents of its pool (0 alone)."""
        ...

    def hand_off_relayed(self, settle_s: float, anyway: bool = False) -> int:
        """Draining: close the relayed sockets whose calls have been quiet at a turn boundary for
        settle_s (all of them with `anyway`), so their clients go on through a ready agent; how many
        were closed."""
        ...

    @property
    def relayed(self) -> int:
        """Client sockets this agent relays to other agents (a drain waits for them too)."""
        ...


def new_record(settings: Settings, owner: str) -> SessionRecord:
    return SessionRecord.new(secrets.token_urlsafe(16), settings.session_ttl_s, owner, settings.pool)


class LocalAdmission:
    """One agent, its own store: a session runs here or nowhere."""

    def __init__(self, settings: Settings, store: SessionStore) -> None:
        self.settings = settings
        self.store = store

    async def start(self, host: CallHost) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, host: CallHost) -> SessionRecord:
        async with host.lock:
            host.check_room()
            record = new_record(self.settings, self.settings.agent_id)
            await self.store.save(record)
            await host.start_call(record)
        return record

    async def resume(self, host: CallHost, session_id: str) -> Call | RemoteOwner | None:
        record = await self.store.get(session_id)
        if record is None or record.status == "ended":
            return None
        async with host.lock:
            if (call := host.live(session_id)) is not None:
                return call
            host.check_room()
            record.owner = self.settings.agent_id
            record.touch(self.settings.session_ttl_s)
            log.info("session resumed", extra={"session_id": session_id, "turns": len(record.history)})
            return await host.start_call(record)

    async def released(self, session_id: str) -> None:
        return None

    async def end(self, session_id: str) -> bool:
        return await self.store.delete(session_id)

    async def draining(self) -> None:
        return None

    async def room_elsewhere(self) -> int:
        return 0

    def hand_off_relayed(self, settle_s: float, anyway: bool = False) -> int:
        return 0

    @property
    def relayed(self) -> int:
        return 0
