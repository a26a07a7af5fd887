"""The pools' sessions kept in the serving process, so a list answers from rows already built.

Reading a pool's 1,000 records from Redis and making them rows costs far more than kubectl's own
work (docs/operator.md, "Sessions in kubectl"), so a pool that is listed gets a `PoolSessions`: its
live sessions, each with its Table row encoded, kept current from the pool's session-events channel
(every script that creates, saves, moves or ends a session publishes its id there; the id is read
again and its row rebuilt).

What a list shows is what Redis holds when the list begins: before answering, a list sends a PING
on the events connection, and Redis answers it only after every event published before it, which
are then applied. What no event announces is caught otherwise: a session whose TTL passed is left
out by its expiry time, and the whole pool is read again every RESYNC_S (a record restored or
edited by hand). A lost events connection (Redis restarted or unreachable, or redis-py reconnected
it, losing what was published meanwhile) drops the pool's copy: the next list starts a new one from
a full read, and fails with a 503 while Redis cannot be read, as a list always did. A pool not
listed for IDLE_S is dropped (its pool may be gone).
"""

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from voice_agent.store import keys
from voice_operator.sessions.objects import EncodedRow, PoolRef, Session
from voice_operator.sessions.store import SessionReader, SessionsUnavailable

log = logging.getLogger(__name__)

# A full read costs a 1,000-session pool some 30 ms of the loop; every script announces its changes,
# so this only catches writes made around them (a restore, a hand edit).
RESYNC_S = 30.0
IDLE_S = 300.0


def expires_ms(session: Session) -> float:
    """A record's expiry as the index scores it; a record without one never expires from here."""
    stamp = session.time("expires_at")
    return stamp.timestamp() * 1000 if stamp else float("inf")


class PoolSessions:
    """One pool's live sessions and their rows; started by the first list of the pool."""

    def __init__(self, reader: SessionReader, pool: PoolRef, resync_s: float, idle_s: float) -> None:
        self.pool = pool
        self._reader = reader
        self._resync_s = resync_s
        self._idle_s = idle_s
        self._rows: dict[str, tuple[float, EncodedRow]] = {}
        self._changed: set[str] = set()
        self._pongs: collections.deque[asyncio.Future[None]] = collections.deque()
        self._applying = asyncio.Lock()
        self._wake = asyncio.Event()
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._released: asyncio.Task[None] | None = None
        self.used = time.monotonic()
        self.closed = asyncio.Event()
        self.started: asyncio.Task[None] = asyncio.create_task(self._start())

    async def _start(self) -> None:
        client = self._reader.client(self.pool)
        self._pubsub = client.pubsub()
        async with self._reader.reading(self.pool):
            await self._pubsub.subscribe(keys.session_events(self.pool.pool_id))
            # redis-py quietly reconnects and subscribes again after a dropped connection; what was
            # published in between is lost, so this copy must not outlive its connection.
            self._pubsub.connection.register_connect_callback(self._reconnected)
            self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._apply_loop())]
            await self._barrier()  # subscribed before the full read: nothing falls between them
            await self._read_all()
        self._tasks.append(asyncio.create_task(self._resync_loop()))

    async def _reconnected(self, _: object) -> None:
        self._lost("its events connection was reconnected")

    def _lost(self, why: str) -> None:
        if self.closed.is_set():
            return
        log.info("a pool's sessions copy dropped", extra={"pool": self.pool.pool_id, "reason": why})
        self.closed.set()
        while self._pongs:
            pong = self._pongs.popleft()
            if not pong.done():
                pong.set_exception(self._dropped())
        for task in self._tasks:
            task.cancel()
        self._released = asyncio.create_task(self._release())

    def _dropped(self) -> SessionsUnavailable:
        return SessionsUnavailable(
            f"the session events of pool {self.pool.namespace}/{self.pool.name} stopped"
        )

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            if self._pubsub.connection is not None:
                self._pubsub.connection.deregister_connect_callback(self._reconnected)
            await self._pubsub.aclose()

    async def close(self) -> None:
        self._lost("closed")
        if not self.started.done():
            self.started.cancel()
        await asyncio.gather(self.started, *self._tasks, return_exceptions=True)
        if self._released is not None:
            await self._released

    async def _listen(self) -> None:
        try:
            while True:
                # Raw replies: redis-py's message parsing misreads a PING's reply under RESP3.
                reply = await self._pubsub.parse_response(block=True)
                kind = reply[0] if isinstance(reply, list) and reply else reply
                if kind == "message":
                    self._changed.add(str(reply[2]))
                    self._wake.set()
                elif kind in ("PONG", "pong") and self._pongs:
                    pong = self._pongs.popleft()
                    if not pong.done():
                        pong.set_result(None)
        except Exception as e:  # whatever stops the events stops this copy
            self._lost(f"{type(e).__name__}: {e}")

    async def _apply_loop(self) -> None:
        """Applies events as they come, so a list seldom finds more than a few left to apply."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._apply()
        except SessionsUnavailable as e:
            self._lost(str(e))

    async def _resync_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._resync_s)
                if time.monotonic() - self.used > self._idle_s:
                    self._lost("not listed for a while")
                    return
                async with self._reader.reading(self.pool):
                    await self._read_all()
        except SessionsUnavailable as e:
            self._lost(str(e))

    async def _barrier(self) -> None:
        """Until every event Redis published before now is known here (pubsub replies in order)."""
        pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(pong)
        try:
            await self._pubsub.ping()
        except Exception as e:  # redis-py's own reconnect can fail inside it, not as a RedisError
            self._lost(f"{type(e).__name__}: {e}")
        if self.closed.is_set():
            if pong.done():
                pong.exception()  # the reason is the one raised here
            raise self._dropped()
        await pong

    async def _read_all(self) -> None:
        """Reads are one at a time and each starts after the events it answers: none overwrites a
        newer one, and an event that came during a full read is read again after it."""
        async with self._applying:
            sessions = await self._reader.pool_sessions(self.pool)
            self._rows = {s.id: self._row(s) for s in sessions}

    async def _apply(self) -> None:
        async with self._applying:
            ids, self._changed = self._changed, set()
            if not ids:
                return
            fresh = {s.id: s for s in await self._reader.pool_sessions(self.pool, ids)}
            for sid in ids:
                session = fresh.get(sid)
                if session is None:
                    self._rows.pop(sid, None)
                else:
                    self._rows[sid] = self._row(session)

    def _row(self, session: Session) -> tuple[float, EncodedRow]:
        known = self._rows.get(session.id)
        if known is not None and known[1].session is session:  # the reader's parse, reused unchanged
            return known
        return expires_ms(session), EncodedRow.of(session)

    async def rows(self) -> list[EncodedRow]:
        """The pool's live sessions as Redis holds them now, in the index's order (by expiry)."""
        self.used = time.monotonic()
        await asyncio.shield(self.started)
        if self.closed.is_set():
            raise self._dropped()
        async with self._reader.reading(self.pool):
            await self._barrier()
            await self._apply()
        now_ms = time.time() * 1000
        live = [(expiry, sid, row) for sid, (expiry, row) in self._rows.items() if expiry > now_ms]
        return [row for _, _, row in sorted(live, key=lambda item: item[:2])]


class SessionCache:
    """The `PoolSessions` of every pool listed lately, by pool (a pool whose Redis URL changed is a
    new one: the old copy idles out)."""

    def __init__(self, reader: SessionReader, resync_s: float = RESYNC_S, idle_s: float = IDLE_S) -> None:
        self._reader = reader
        self._resync_s = resync_s
        self._idle_s = idle_s
        self._pools: dict[PoolRef, PoolSessions] = {}

    def _of(self, pool: PoolRef) -> PoolSessions:
        known = self._pools.get(pool)
        if known is None or known.closed.is_set():
            self._pools = {p: c for p, c in self._pools.items() if not c.closed.is_set()}
            known = self._pools[pool] = PoolSessions(self._reader, pool, self._resync_s, self._idle_s)
        return known

    async def _pool_rows(self, pool: PoolRef) -> list[EncodedRow]:
        """A copy that served before and was lost since (Redis restarted, say) gets one fresh start
        before the list fails: only a Redis that cannot be read now makes it a 503."""
        copy = self._of(pool)
        fresh = not copy.started.done()
        try:
            return await copy.rows()
        except SessionsUnavailable:
            await copy.close()
            if fresh:
                raise
        return await self._of(pool).rows()

    async def rows(self, pools: Iterable[PoolRef]) -> list[EncodedRow]:
        found = await asyncio.gather(*(self._pool_rows(p) for p in pools))
        return [row for batch in found for row in batch]

    async def sessions(self, pools: Sequence[PoolRef]) -> list[Session]:
        return [row.session for row in await self.rows(pools)]

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
