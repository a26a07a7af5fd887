"""Owns the live calls of this agent: admission (capacity, draining), lookup, drain and cleanup.

With Redis (`manager.redis` set) admission is pool-wide: a new session goes wherever the
allocation script puts it, and a WebSocket for a session held elsewhere gets a RemoteOwner
(the signaling layer relays to it) while one whose owner died is claimed here (resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voice_agent import metrics
from voice_agent.call import CLOSE_ENDED, Call
from voice_agent.models import SessionRecord
from voice_agent.providers.base import Providers
from voice_agent.settings import Settings
from voice_agent.store.base import SessionStore, StoreUnavailable

if TYPE_CHECKING:
    from voice_agent.registry import Registry
    from voice_agent.relay import Relay
    from voice_agent.store.redis import RedisSessionStore

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.1


class CapacityError(Exception):
    """No room for another session here; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RemoteOwner:
    """The session is live on another agent: relay the client's signaling to it."""

    agent_id: str


def _unavailable() -> CapacityError:
    return CapacityError("session store (redis) unavailable; try again shortly", retry_after=2)


class CallManager:
    def __init__(self, settings: Settings, store: SessionStore, providers: Providers) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.calls: dict[str, Call] = {}
        self.draining = False
        self._admission = asyncio.Lock()
        self.redis: RedisSessionStore | None = None
        self.relay: Relay | None = None
        self.registry: Registry | None = None
        self.sockets: dict[str, int] = {}

    def socket_opened(self, session_id: str) -> bool:
        """Count a WebSocket for the session; False (not counted) beyond max_sockets_per_session.

        One socket replaces the previous one (4409), but until the replaced one has closed both
        exist; a reconnect storm must not turn that window into unbounded sockets per session.
        """
        open_now = self.sockets.get(session_id, 0)
        if open_now >= self.settings.max_sockets_per_session:
            return False
        self.sockets[session_id] = open_now + 1
        return True

    def socket_closed(self, session_id: str) -> None:
        left = self.sockets.get(session_id, 0) - 1
        if left > 0:
            self.sockets[session_id] = left
        else:
            self.sockets.pop(session_id, None)

    @property
    def active(self) -> int:
        return len(self.calls)

    @property
    def at_capacity(self) -> bool:
        return self.active >= self.settings.max_sessions

    def _admit(self) -> None:
        if self.draining:
            raise CapacityError("agent is draining", retry_after=1)
        if self.at_capacity:
            raise CapacityError(f"agent at capacity ({self.settings.max_sessions} sessions)")

    async def create_session(self) -> SessionRecord:
        if self.redis is not None:
            return await self._allocate(self.redis)
        async with self._admission:
            self._admit()
            record = SessionRecord.new(
                secrets.token_urlsafe(16),
                self.settings.session_ttl_s,
                self.settings.agent_id,
                self.settings.pool,
            )
            await self.store.save(record)
            await self._start_call(record)
        log.info("session created", extra={"session_id": record.id})
        return record

    async def _allocate(self, redis: RedisSessionStore) -> SessionRecord:
        """Pool-wide admission: the allocation script picks the owner; this agent may not be it."""
        if self.draining:
            raise CapacityError("agent is draining", retry_after=1)
        record = SessionRecord.new(
            secrets.token_urlsafe(16), self.settings.session_ttl_s, "", self.settings.pool
        )
        try:
            owner = await redis.allocate(record)
        except StoreUnavailable as exc:
            log.warning("allocation failed: redis unavailable", extra={"error": str(exc)})
            raise _unavailable() from None
        if owner is None:
            raise CapacityError(f"pool {self.settings.pool!r} is at capacity", retry_after=5)
        record.owner = owner
        if owner == self.settings.agent_id:
            async with self._admission:
                await self._start_call(record)
        elif self.relay is not None:
            # The owner starts the call (and its connect timeout) now; if this message is lost,
            # the client's WebSocket starts it, and the owner's heartbeat frees the slot if not.
            await self.relay.send(owner, "assign", record.id, "", {})
        log.info("session created", extra={"session_id": record.id, "owner": owner})
        return record

    async def adopt(self, session_id: str) -> None:
        """Another agent allocated a session to this one: start its call so it is ready."""
        with contextlib.suppress(CapacityError):
            await self.open_call(session_id)

    async def open_call(self, session_id: str) -> Call | RemoteOwner | None:
        """The call for a WebSocket: the live one, a resumed one, or the agent that runs it."""
        call = self.calls.get(session_id)
        if call is not None:
            return call
        if self.redis is not None:
            return await self._claim(self.redis, session_id)
        record = await self.store.get(session_id)
        if record is None or record.status == "ended":
            return None
        async with self._admission:
            if (call := self.calls.get(session_id)) is not None:
                return call
            self._admit()
            record.owner = self.settings.agent_id
            record.touch(self.settings.session_ttl_s)
            log.info("session resumed", extra={"session_id": session_id, "turns": len(record.history)})
            return await self._start_call(record)

    async def _claim(self, redis: RedisSessionStore, session_id: str) -> Call | RemoteOwner | None:
        async with self._admission:
            if (call := self.calls.get(session_id)) is not None:
                return call
            started = time.perf_counter()
            try:
                claim = await redis.claim(session_id)
            except StoreUnavailable:
                raise _unavailable() from None
            if claim.kind == "remote":
                return RemoteOwner(claim.owner)
            if claim.kind == "refused":
                raise CapacityError(f"cannot take this session here: {claim.reason}", retry_after=1)
            if claim.record is None:
                return None
            record = claim.record
            record.touch(self.settings.session_ttl_s)
            call = await self._start_call(record)
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

    async def _start_call(self, record: SessionRecord) -> Call:
        call = Call(record, self.settings, self.store, self.providers, self._gone)
        self.calls[record.id] = call
        metrics.ACTIVE_SESSIONS.set(self.active)
        await call.start()
        return call

    async def _gone(self, call: Call) -> None:
        if self.calls.get(call.id) is call:
            del self.calls[call.id]
        metrics.ACTIVE_SESSIONS.set(self.active)
        if self.redis is not None:
            try:
                await self.redis.release(call.id)
            except StoreUnavailable:
                log.warning("could not release session in redis; heartbeat will reconcile")

    async def end_session(self, session_id: str) -> bool:
        """The client's socket is closed last: once it sees the close, the session is gone."""
        call = self.calls.get(session_id)
        conn = call.conn if call is not None else None
        if call is not None:
            call.conn = None
            await call.close("ended")
        try:
            return await self._end_record(session_id) or call is not None
        finally:
            if conn is not None:
                await conn.aclose(CLOSE_ENDED, "ended")

    async def _end_record(self, session_id: str) -> bool:
        if self.redis is None:
            return await self.store.delete(session_id)
        try:
            owner = await self.redis.end(session_id)
        except StoreUnavailable:
            raise _unavailable() from None
        if owner and owner != self.settings.agent_id and self.relay is not None:
            await self.relay.send(owner, "end", session_id, "", {})
        return owner is not None

    async def end_local(self, session_id: str) -> None:
        """The session was ended through another agent: stop its call here."""
        call = self.calls.get(session_id)
        if call is not None:
            await call.close("ended")

    def records_lost(self, session_ids: list[str]) -> None:
        """Redis lost these records (restart without persistence): the live calls rewrite them."""
        for sid in session_ids:
            if (call := self.calls.get(sid)) is not None:
                call.mark_dirty()

    @property
    def busy(self) -> int:
        """Calls with a client attached plus sockets relayed for other agents: what drain waits for."""
        relayed = self.relay.active_edges if self.relay is not None else 0
        return sum(1 for c in self.calls.values() if c.conn is not None) + relayed

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: refuse new sessions, let live calls finish (up to timeout_s), then suspend the rest.

        A call whose client is not connected is suspended at once: its client will reconnect,
        and should land on (and resume at) an agent that is not going away.
        """
        self.draining = True
        log.info("draining", extra={"active_sessions": self.active, "timeout_s": timeout_s})
        if self.registry is not None:
            await self.registry.set_draining()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = [c for c in self.calls.values() if c.conn is None]
            await asyncio.gather(*(c.close("disconnected") for c in idle))
            if self.busy == 0:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        log.info("drained", extra={"left": self.busy})
        await self.close()

    async def close(self) -> None:
        """Shutdown: calls are suspended, not ended, so their records stay resumable elsewhere."""
        await asyncio.gather(*(c.close("disconnected") for c in list(self.calls.values())))
