"""Owns the live calls of this agent: lookup, sockets per session, drain and cleanup.

Where a session is placed and how one not live here is found is the `Admission` the manager is
built with (admission.py): this agent alone, or the pool over Redis (pool_admission.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from voice_agent.media.peer import warm_up as warm_up_media
from voice_agent.protocol.sessions import SessionRecord
from voice_agent.protocol.signaling import CloseCode
from voice_agent.providers.base import Providers
from voice_agent.sessions.admission import Admission, CapacityError, RemoteOwner
from voice_agent.sessions.call import MOVE_PATIENCE_S, Call
from voice_agent.settings import Settings
from voice_agent.store.base import SessionStore
from voice_agent.telemetry import metrics
from voice_agent.telemetry.loop import LoopMonitor

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.1
# A turn boundary must hold this long before a call is moved: a typed question or a transcript on its
# way is a frame or two from starting its turn, and this is far longer than that takes.
MOVE_SETTLE_S = 0.2
# A moved call counts against the room elsewhere until its client's reconnect has claimed a slot
# there (a reconnect through the balancer takes milliseconds; ten times this is a client gone).
MOVE_CLAIM_S = 2.0
# Calls moved per drain poll (DRAIN_POLL_S): ten calls ready at once, moved at once, reconnect and
# renegotiate at once with the agent that takes them, and each waits for the others' handshakes on its
# cores; a call every poll keeps two or three in flight, and ten are gone in about a second.
MOVES_PER_POLL = 1
# A client reconnecting to a call still closing here waits this long at most for its close (a close's
# store writes are bounded well below it) before it is told to try again.
CLOSING_WAIT_S = 10.0

__all__ = ["CallManager", "CapacityError", "RemoteOwner"]


class CallManager:
    def __init__(
        self, settings: Settings, store: SessionStore, providers: Providers, admission: Admission
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.admission = admission
        self.calls: dict[str, Call] = {}
        self.draining = False
        self._lock = asyncio.Lock()
        self.sockets: dict[str, int] = {}
        self.loop_monitor = LoopMonitor()
        self._quiet_since: dict[str, float] = {}
        self._moved_at: list[float] = []
        self._no_room: set[str] = set()
        self._drain_started: float | None = None

    async def start(self) -> None:
        self.loop_monitor.start()
        # Before the agent joins its pool or serves: its first calls would pay for it otherwise.
        warmed = await warm_up_media()
        if warmed is not None:
            log.info("media warmed up", extra={"ms": round(warmed * 1000, 1)})
        await self.admission.start(self)

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

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock

    def live(self, session_id: str) -> Call | None:
        """The session's call here, unless it is closing: a closing call takes no socket."""
        call = self.calls.get(session_id)
        return None if call is None or call.closing else call

    def running(self) -> list[str]:
        return list(self.calls)

    def check_room(self) -> None:
        if self.draining:
            raise CapacityError("agent is draining", retry_after=1)
        if self.at_capacity:
            raise CapacityError(f"agent at capacity ({self.settings.max_sessions} sessions)")

    async def create_session(self) -> SessionRecord:
        if self.draining:
            raise CapacityError("agent is draining", retry_after=1)
        record = await self.admission.create(self)
        log.info("session created", extra={"session_id": record.id, "owner": record.owner})
        return record

    def prepare_media(self, session_id: str) -> None:
        """The session's call here, if any, makes its first offer's peer now (Call.prepare_media)."""
        if (call := self.live(session_id)) is not None:
            call.prepare_media()

    async def adopt(self, session_id: str) -> None:
        """Another agent allocated a session to this one: start its call so it is ready, its media too
        (the other agent answers the client)."""
        with contextlib.suppress(CapacityError):
            await self.open_call(session_id)
        self.prepare_media(session_id)

    async def open_call(self, session_id: str) -> Call | RemoteOwner | None:
        """The call for a WebSocket: the live one, a resumed one, or the agent that runs it.

        A call still closing here (moved, suspended) is waited for, then the session is resumed as
        it now stands in the store: a socket attached to the closing call would be served by nothing,
        and kept the call in a draining agent's list to be "moved" again at every poll."""
        call = self.calls.get(session_id)
        if call is not None and call.closing:
            try:
                await asyncio.wait_for(call.wait_gone(), CLOSING_WAIT_S)
            except TimeoutError:
                raise CapacityError("the session is still closing here", retry_after=1) from None
            call = self.calls.get(session_id)
        if call is not None and not call.closing:
            return call
        return await self.admission.resume(self, session_id)

    async def start_call(self, record: SessionRecord) -> Call:
        call = Call(record, self.settings, self.store, self.providers, self._gone)
        self.calls[record.id] = call
        metrics.ACTIVE_SESSIONS.set(self.active)
        await call.start()
        return call

    async def _gone(self, call: Call) -> None:
        if self.calls.get(call.id) is call:
            del self.calls[call.id]
        metrics.ACTIVE_SESSIONS.set(self.active)
        await self.admission.released(call.id)

    async def end_session(self, session_id: str) -> bool:
        """The client's socket is closed last: once it sees the close, the session is gone."""
        call = self.calls.get(session_id)
        conn = call.conn if call is not None else None
        if call is not None:
            call.conn = None
            await call.close("ended")
        try:
            return await self.admission.end(session_id) or call is not None
        finally:
            if conn is not None:
                await conn.aclose(CloseCode.ENDED, "ended")

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
        return sum(1 for c in self.calls.values() if c.conn is not None) + self.admission.relayed

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: refuse new sessions, move live calls elsewhere at their turn boundaries or let them
        finish (up to timeout_s), then suspend the rest.

        A call whose client is not connected is suspended at once: its client will reconnect,
        and should land on (and resume at) an agent that is not going away.
        """
        self.draining = True
        self._drain_started = time.monotonic()
        log.info("draining", extra={"active_sessions": self.active, "timeout_s": timeout_s})
        await self.admission.draining()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = [c for c in self.calls.values() if c.conn is None]
            await asyncio.gather(*(c.close("disconnected") for c in idle))
            if self.settings.drain_migrate:
                await self._migrate()
            if self.busy == 0:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        log.info("drained", extra={"left": self.busy})
        await self.close()

    async def _migrate(self) -> None:
        """Move the calls ready to move (Call.ready_to_move: at a turn boundary, or past the drain's
        patience while a turn is answered) to the pool's other agents, as many as they have room for.

        With no room elsewhere (or no pool) calls stay, as they would without migration, until room
        appears or the drain times out.
        Sockets relayed to calls on other agents go too, when their call is quiet: only the socket
        moves (to a ready agent), the call and its media stay where they are.
        """
        now = time.monotonic()
        waited = now - (self._drain_started or now)
        # Past the patience a call gets (MOVE_PATIENCE_S), every relayed socket goes, quiet or not.
        if handed := self.admission.hand_off_relayed(MOVE_SETTLE_S, anyway=waited >= MOVE_PATIENCE_S):
            log.info("relayed sockets handed off", extra={"count": handed})
        ready: list[Call] = []
        for sid, call in list(self.calls.items()):
            if call.conn is None or call.closing or not call.ready_to_move(waited):
                self._quiet_since.pop(sid, None)
            elif now - self._quiet_since.setdefault(sid, now) >= MOVE_SETTLE_S:
                ready.append(call)
        if not ready:
            return
        self._moved_at = [t for t in self._moved_at if now - t < MOVE_CLAIM_S]
        room = await self.admission.room_elsewhere() - len(self._moved_at)
        for call in ready[: min(max(0, room), MOVES_PER_POLL)]:
            self._quiet_since.pop(call.id, None)
            try:
                if not await call.move():
                    continue  # it closed meanwhile (its client left, the store fenced it): nothing moved
            except Exception:
                log.exception("moving a call failed", extra={"session_id": call.id})
                metrics.MIGRATIONS.labels("failed").inc()
                continue
            self._moved_at.append(time.monotonic())
            metrics.MIGRATIONS.labels("moved").inc()
            log.info("call moved", extra={"session_id": call.id})
        for call in ready[max(0, room) :]:
            if call.id not in self._no_room:
                self._no_room.add(call.id)
                metrics.MIGRATIONS.labels("no_room").inc()
                log.info("no room elsewhere for a call; it stays", extra={"session_id": call.id})

    async def close(self) -> None:
        """Shutdown: calls are suspended, not ended, so their records stay resumable elsewhere."""
        await asyncio.gather(*(c.close("disconnected") for c in list(self.calls.values())))
        await self.loop_monitor.stop()
