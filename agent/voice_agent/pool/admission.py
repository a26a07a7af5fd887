"""Pool-wide admission over Redis: allocation, claims, the relay and the registry entry.

A new session goes wherever the allocation script puts it (this agent may not be it); a socket
for a session live elsewhere is relayed to its owner; a session whose owner died is claimed here
(resume). The relay inbox and the heartbeat are what make this agent a member of the pool, so
they start and stop with the admission (docs/redis.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voice_agent.pool import inbox
from voice_agent.pool.registry import Registry
from voice_agent.pool.relay import Relay
from voice_agent.protocol.sessions import SessionRecord
from voice_agent.sessions.admission import CallHost, CapacityError, Edge, RemoteOwner, new_record
from voice_agent.sessions.connection import ClientConnection
from voice_agent.settings import Settings
from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import RedisSessionStore

if TYPE_CHECKING:
    from voice_agent.sessions.call import Call

log = logging.getLogger(__name__)


def _unavailable() -> CapacityError:
    return CapacityError("session store (redis) unavailable; try again shortly", retry_after=2)


class PooledAdmission:
    def __init__(self, settings: Settings, store: RedisSessionStore, url: str) -> None:
        self.settings = settings
        self.store = store
        self.url = url
        self.relay: Relay | None = None
        self.registry: Registry | None = None

    async def start(self, host: CallHost) -> None:
        """Become a member of the pool: listen on the relay inbox, then register and beat."""
        self.relay = Relay(self.store, host, self.settings.max_frame_bytes)
        self.registry = Registry(
            self.store,
            self.url,
            running=host.running,
            on_lost_records=host.records_lost,
            after_beat=self.relay.check_links,
        )
        await self.relay.start()
        await self.registry.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
        if self.registry is not None:
            await self.registry.stop()

    async def create(self, host: CallHost) -> SessionRecord:
        record = new_record(self.settings, "")
        try:
            owner = await self.store.allocate(record)
        except StoreUnavailable as exc:
            log.warning("allocation failed: redis unavailable", extra={"error": str(exc)})
            raise _unavailable() from None
        if owner is None:
            raise CapacityError(f"pool {self.settings.pool!r} is at capacity", retry_after=5)
        record.owner = owner
        if owner == self.settings.agent_id:
            async with host.lock:
                await host.start_call(record)
        elif self.relay is not None:
            # The owner starts the call (and its connect timeout) now; if this message is lost,
            # the client's WebSocket starts it, and the owner's heartbeat frees the slot if not.
            await self.relay.send(owner, "assign", record.id, "", {})
        return record

    async def resume(self, host: CallHost, session_id: str) -> Call | RemoteOwner | None:
        async with host.lock:
            if (call := host.live(session_id)) is not None:
                return call
            started = time.perf_counter()
            try:
                claim = await self.store.claim(session_id)
            except StoreUnavailable:
                raise _unavailable() from None
            if claim.kind == "remote":
                return RemoteOwner(claim.owner, self._open_edge(claim.owner))
            if claim.kind == "refused":
                raise CapacityError(f"cannot take this session here: {claim.reason}", retry_after=1)
            if claim.record is None:
                return None
            record = claim.record
            record.touch(self.settings.session_ttl_s)
            call = await host.start_call(record)
        log.info(
            "session resumed" if claim.kind == "claimed" else "session started",
            extra={
                "session_id": session_id,
                "turns": len(record.history),
                "epoch": claim.epoch,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return call

    def _open_edge(self, owner: str) -> Callable[[str, ClientConnection], Awaitable[Edge | None]]:
        async def open_edge(session_id: str, conn: ClientConnection) -> Edge | None:
            return await self.relay.open_edge(session_id, owner, conn) if self.relay is not None else None

        return open_edge

    async def released(self, session_id: str) -> None:
        try:
            await self.store.release(session_id)
        except StoreUnavailable:
            log.warning("could not release session in redis; heartbeat will reconcile")

    async def end(self, session_id: str) -> bool:
        try:
            owner = await self.store.end(session_id)
        except StoreUnavailable:
            raise _unavailable() from None
        if owner and owner != self.settings.agent_id and self.relay is not None:
            await self.relay.send(owner, inbox.END, session_id, "", {})
        return owner is not None

    async def draining(self) -> None:
        if self.registry is not None:
            await self.registry.set_draining()

    async def room_elsewhere(self) -> int:
        try:
            return await self.store.room_elsewhere()
        except StoreUnavailable:
            return 0  # unknown is no room: the calls stay, as they would without a pool

    def hand_off_relayed(self, settle_s: float, anyway: bool = False) -> int:
        return self.relay.hand_off_quiet(settle_s, anyway) if self.relay is not None else 0

    @property
    def relayed(self) -> int:
        return self.relay.active_edges if self.relay is not None else 0
