"""VoiceSessions in the pools' Redis: read with the agents' own key names (voice_agent/store/keys.py),
ended with the agents' own END script, watched on the pools' session-events channels.

A pool's sessions are one SORT of its session index that fetches the records with it, a few
sessions one pipelined HMGET; cache.py keeps what lists answer from current with these reads.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Protocol

import pydantic_core
import redis.asyncio as aioredis

from voice_agent.pool import inbox
from voice_agent.store import keys
from voice_agent.store import redis_scripts as lua
from voice_operator.redis_clients import RedisClients
from voice_operator.sessions.objects import PoolRef, Session

SENDER = "voicepool-operator"
# How long a delete waits for the owning agent to stop the call before ending the session anyway.
OWNER_STOP_S = 1.0
# What is read of a session's hash (voice_agent/store/keys.py, session_key).
FIELDS = ("data", "owner", "ended")


class SessionsUnavailable(Exception):
    """A pool's Redis could not be read (the API answers 503 with this message)."""


class PoolSource(Protocol):
    def __call__(self, namespace: str | None) -> Awaitable[Sequence[PoolRef]]:
        """The VoiceAgentPools of a namespace (None: of every namespace)."""
        ...


def _session(pool: PoolRef, session_id: str, row: Sequence[Any]) -> Session | None:
    data, owner, ended = row
    if data is None or ended == "1":
        return None
    try:
        record = pydantic_core.from_json(data)  # several times json.loads' speed: lists are big
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    return Session(pool, session_id, str(owner or record.get("owner") or ""), record)


class SessionReader:
    def __init__(self, redis: RedisClients) -> None:
        self._redis = redis
        self.timeout_s = redis.timeout_s
        # Each session's last parse, reused while Redis returns the very same record and owner:
        # Redis is read on every request, only an unchanged record is not parsed again.
        self._parsed: dict[tuple[str, str], tuple[str, Any, Session]] = {}

    def _session(self, pool: PoolRef, session_id: str, row: Sequence[Any]) -> Session | None:
        key = (pool.pool_id, session_id)
        known = self._parsed.get(key)
        if known is not None and known[0] == row[0] and known[1] == row[1] and known[2].pool == pool:
            return known[2]
        session = _session(pool, session_id, row)
        if session is None:
            self._parsed.pop(key, None)
        else:
            self._parsed[key] = (row[0], row[1], session)
        return session

    def _forget_others(self, pool: PoolRef, live: set[str]) -> None:
        gone = [k for k in self._parsed if k[0] == pool.pool_id and k[1] not in live]
        for key in gone:
            del self._parsed[key]

    def client(self, pool: PoolRef) -> "aioredis.Redis":
        if pool.redis_url is None:
            raise SessionsUnavailable(f"the Redis URL of pool {pool.namespace}/{pool.name} is not resolved")
        return self._redis.get(pool.redis_url)

    @contextlib.asynccontextmanager
    async def reading(self, pool: PoolRef) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._redis.timeout_s):
                yield
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            raise SessionsUnavailable(
                f"cannot read the sessions of pool {pool.namespace}/{pool.name}: {type(e).__name__}: {e}"
            ) from e

    async def pool_sessions(self, pool: PoolRef, ids: Iterable[str] | None = None) -> list[Session]:
        """The pool's live sessions (or those of `ids` that are live), in the index's order.

        The whole pool is one SORT of the index that fetches each record's fields with it (one
        reply, where a pipeline of an HMGET per session costs a reply each to parse); the index may
        still name a session that expired, whose fields come back empty and are skipped.
        """
        client = self.client(pool)
        async with self.reading(pool):
            if ids is None:
                record = keys.session_key(pool.pool_id, "*")
                fields = [f"{record}->{field}" for field in FIELDS]
                flat: Any = await client.sort(
                    keys.sessions_index_key(pool.pool_id), by="nosort", get=["#", *fields]
                )
                width = len(FIELDS) + 1
                rows = [flat[i : i + width] for i in range(0, len(flat), width)]
                listed = [s for s in (self._session(pool, row[0], row[1:]) for row in rows) if s]
                self._forget_others(pool, {s.id for s in listed})
                return listed
            wanted = list(ids)
            if not wanted:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for sid in wanted:
                    pipe.hmget(keys.session_key(pool.pool_id, sid), list(FIELDS))
                found = await pipe.execute()
        return [
            s for s in (self._session(pool, sid, row) for sid, row in zip(wanted, found, strict=True)) if s
        ]

    async def sessions(self, pools: Iterable[PoolRef]) -> list[Session]:
        found = await asyncio.gather(*(self.pool_sessions(p) for p in pools))
        return [s for batch in found for s in batch]

    async def find(self, pools: Iterable[PoolRef], session_id: str) -> Session | None:
        """A session id is unique in practice; the pools of the namespace are asked together."""
        found = await asyncio.gather(*(self.pool_sessions(p, [session_id]) for p in pools))
        return next((s for batch in found for s in batch), None)

    async def end(self, session: Session) -> bool:
        """Ends the session as its owner ends one itself: the call stops first (its client's socket
        closes with 1000), then END; False when it had ended meanwhile.

        Ended the other way round, a save the call makes before it hears the news is refused as
        ended, which the call takes for another agent taking the session over, and its client hears
        4409 (replaced, do not reconnect) instead of 1000. So a holder whose inbox is heard is told
        first and given OWNER_STOP_S to save the call as ended; END follows either way, and a session
        held by no live agent is ended at once.
        """
        pool = session.pool
        client = self.client(pool)
        told, owner = "", session.owner
        async with self.reading(pool):
            if owner and await client.sismember(keys.agent_sessions_key(pool.pool_id, owner), session.id):
                async with self.subscribe([pool]) as events:
                    if await self._tell_end(client, pool, owner, session.id):
                        told = owner
                        await self._stopped(pool, session.id, events)
            script_keys, args = lua.end_call(pool.pool_id, session.id)
            owner = await client.eval(lua.END, len(script_keys), *script_keys, *args)
            if owner and owner != told:  # held elsewhere by now: that agent stops the call
                await self._tell_end(client, pool, str(owner), session.id)
        return owner is not None

    async def _tell_end(self, client: "aioredis.Redis", pool: PoolRef, owner: str, session_id: str) -> bool:
        """True when the owner's inbox has a listener (a live agent heard it)."""
        message = inbox.encode(inbox.message(inbox.END, session_id, "", SENDER))
        return bool(await client.publish(keys.agent_inbox(pool.pool_id, owner), message))

    async def _stopped(self, pool: PoolRef, session_id: str, events: "SessionEvents") -> None:
        """Until the session's record says ended (its call saved it so) or it is gone, up to
        OWNER_STOP_S: an owner that holds the session without a call for it saves nothing."""
        deadline = time.monotonic() + OWNER_STOP_S
        while (left := deadline - time.monotonic()) > 0:
            if any(sid == session_id for _, sid in await events.next(left)):
                found = await self.pool_sessions(pool, [session_id])
                if not found or found[0].status == "ended":
                    return

    def subscribe(self, pools: Sequence[PoolRef]) -> "SessionEvents":
        return SessionEvents(self, pools)


class SessionEvents:
    """The ids of sessions that changed in some pools, from their events channels (one connection
    per Redis server); `changes` yields (pool, session id) as the scripts publish them."""

    def __init__(self, reader: SessionReader, pools: Sequence[PoolRef]) -> None:
        self._reader = reader
        self._pools = [p for p in pools if p.redis_url is not None]
        self._queue: asyncio.Queue[tuple[PoolRef, str] | Exception] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "SessionEvents":
        by_url: dict[str, list[PoolRef]] = {}
        for pool in self._pools:
            by_url.setdefault(str(pool.redis_url), []).append(pool)
        subscribed = []
        for url, pools in by_url.items():
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.create_task(self._listen(url, pools, ready)))
            subscribed.append(ready)
        await asyncio.gather(*subscribed)
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self, url: str, pools: list[PoolRef], ready: "asyncio.Future[None]") -> None:
        channels = {keys.session_events(p.pool_id): p for p in pools}
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=self._reader.timeout_s
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            ready.set_result(None)
            while True:
                msg = await pubsub.get_message(timeout=30.0)
                if msg is not None and msg.get("type") == "message":
                    self._queue.put_nowait((channels[str(msg["channel"])], str(msg["data"])))
        except (aioredis.RedisError, OSError) as e:
            failure = SessionsUnavailable(f"the session events stopped: {type(e).__name__}: {e}")
            if not ready.done():
                ready.set_exception(failure)
            self._queue.put_nowait(failure)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    async def next(self, timeout_s: float) -> list[tuple[PoolRef, str]]:
        """The changes announced within timeout_s of the first (all of them, once one came); []."""
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return []
        items = [first]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for item in items:
            if isinstance(item, Exception):
                raise item
        return [i for i in items if not isinstance(i, Exception)]
