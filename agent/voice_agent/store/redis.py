"""Redis session store: records with TTL, atomic allocation and fenced ownership (see docs/redis.md).

One client per agent over a bounded connection pool; `REDIS_URL` carries AUTH (``redis://user:pw@``)
and TLS (``rediss://...?ssl_ca_certs=/path/ca.crt``), or names a Sentinel group that finds the primary
(``redis+sentinel://host:26379,.../service``, store/redis_url.py). Every operation is timed and
counted, and every Redis failure surfaces as StoreUnavailable so callers can refuse new work with a
clear 503 while live calls carry on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from voice_agent.protocol.sessions import SessionRecord, utcnow
from voice_agent.store import keys
from voice_agent.store import redis_scripts as lua
from voice_agent.store.base import OwnershipLost, SessionEnded, StoreUnavailable
from voice_agent.store.redis_metrics import LEASE_LAPSES, REDIS_ERRORS, REDIS_OP_SECONDS, UNREPLICATED_WRITES
from voice_agent.store.redis_url import (
    async_client,
    close_client,
    close_sync_client,
    describe,
    is_sentinel,
    primary_address,
    sync_client,
)

log = logging.getLogger(__name__)

LIST_LIMIT = 1000
START_GRACE_MS = 10_000
# Record writes wait this long for a replica's acknowledgement (docs/redis.md, "Durability"); one
# that times out means no replica is in sync, and writes go unacknowledged for NO_REPLICA_RETRY_S.
WAIT_TIMEOUT_MS = 100
NO_REPLICA_RETRY_S = 5.0

ClaimKind = Literal["mine", "claimed", "remote", "missing", "refused"]


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    epoch: int = 0
    owner: str = ""
    reason: str = ""
    record: SessionRecord | None = None


def _ms(dt: Any) -> int:
    return int(dt.timestamp() * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def connect(url: str, max_connections: int = 64, timeout_s: float = 2.0, inbox: bool = False) -> Redis:
    """A client on a bounded, blocking pool: bursts wait for a connection instead of failing.

    `inbox`: the pub/sub subscription's client. It never reconnects by itself (a subscription renewed
    behind the relay's back would hide the messages lost in between) and sends no health-check
    pings, whose read timeout expires spuriously when the event loop stalls longer than it: the
    relay would drop every link for nothing. A dead subscription shows as an error on its socket,
    or as the agent's own inbox no longer heard (pool/relay.py checks at every heartbeat).
    """
    return async_client(
        url,
        blocking_timeout_s=timeout_s,
        max_connections=max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        health_check_interval=0 if inbox else 5,
        decode_responses=True,
        # One fresh-connection retry covers a restarted server, and a promoted primary: a new
        # connection asks the Sentinels where the primary is.
        retry=Retry(NoBackoff(), 0 if inbox else 1),
    )


class _Replicated:
    """A record-writing script whose write a replica acknowledges (WAIT on the same connection: WAIT
    counts the writes of its own connection) before the caller is told it is done, so a failover
    that promotes that replica keeps it."""

    def __init__(self, store: RedisSessionStore, script: Any) -> None:
        self._store = store
        self._script = script

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        store = self._store
        if store.wait_replicas <= 0 or time.monotonic() < store._no_replica_until:
            if store.wait_replicas > 0:
                UNREPLICATED_WRITES.inc()
            return await self._script(keys=keys, args=args)
        async with store.client.client() as conn:
            reply = await self._script(keys=keys, args=args, client=conn)
            acked = int(await conn.wait(store.wait_replicas, WAIT_TIMEOUT_MS))
        if acked < store.wait_replicas:
            UNREPLICATED_WRITES.inc()
            store._no_replica_until = time.monotonic() + NO_REPLICA_RETRY_S
            log.warning(
                "no replica acknowledged a session write; writing without waiting for a while",
                extra={"acked": acked, "retry_s": NO_REPLICA_RETRY_S},
            )
        return reply


class RedisSessionStore:
    """Session records plus the ownership scripts, for one agent (`agent_id`) of one pool."""

    enabled_backend = "redis"

    def __init__(
        self,
        url: str,
        pool: str,
        agent_id: str,
        capacity: int,
        max_connections: int = 64,
        wait_replicas: int | None = None,
    ) -> None:
        self.pool = pool
        self.agent_id = agent_id
        self.capacity = capacity
        self.draining = False
        self._url = url
        self._registered = False
        # A Sentinel group has replicas to promote, so its writes wait for one (docs/redis.md).
        self.wait_replicas = (1 if is_sentinel(url) else 0) if wait_replicas is None else wait_replicas
        self._no_replica_until = 0.0
        self.health_error: str | None = None
        self._last_error: str | None = None
        self.client = connect(url, max_connections)
        self._inbox_client = connect(url, 4, inbox=True)
        self._leases: dict[str, int] = {}
        self._agents = keys.agents_key(pool)
        self._prefix = keys.agent_prefix(pool)
        self._mine = keys.agent_sessions_key(pool, agent_id)
        self._index = keys.sessions_index_key(pool)
        self._events = keys.session_events(pool)
        self.inbox = keys.agent_inbox(pool, agent_id)
        self._allocate = _Replicated(self, self.client.register_script(lua.ALLOCATE))
        self._claim = _Replicated(self, self.client.register_script(lua.CLAIM))
        self._save = _Replicated(self, self.client.register_script(lua.SAVE))
        self._release = self.client.register_script(lua.RELEASE)
        self._room = self.client.register_script(lua.ROOM)
        self._end = _Replicated(self, self.client.register_script(lua.END))
        self._heartbeat = self.client.register_script(lua.HEARTBEAT)

    def _session(self, session_id: str) -> str:
        return keys.session_key(self.pool, session_id)

    @contextlib.asynccontextmanager
    async def _op(self, name: str) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        except RedisError as exc:
            REDIS_ERRORS.labels(name).inc()
            self._last_error = f"redis {name} failed: {type(exc).__name__}: {exc}"
            raise StoreUnavailable(self._last_error) from exc
        finally:
            REDIS_OP_SECONDS.labels(name).observe(time.perf_counter() - started)

    # --- SessionStore -------------------------------------------------------------------------
    async def start(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.healthy()

    async def close(self) -> None:
        for client in (self.client, self._inbox_client):
            await close_client(client)

    async def healthy(self, timeout_s: float = 0.5) -> bool:
        """Bounded: a black-holed Redis must not make /health (a liveness probe) hang. Why it is not
        healthy goes to `health_error` (no secrets: redis-py's messages name hosts, never passwords)."""
        try:
            async with asyncio.timeout(timeout_s), self._op("ping"):
                ok = bool(await self.client.ping())
        except StoreUnavailable as exc:
            self.health_error = str(exc)
            return False
        except TimeoutError:
            # A loaded agent may not finish asking the Sentinels within the probe: the heartbeat's
            # last failure (every second) says what is wrong.
            primary = primary_address(self.client)
            named = f" (the Sentinels name {primary} as primary)" if primary else ""
            last = f"; last error: {self._last_error}" if self._last_error else ""
            self.health_error = f"redis ping: no answer within {timeout_s:g} s{named}{last}"
            return False
        self.health_error = self._last_error = None
        return ok

    def holds(self, session_id: str) -> bool:
        return session_id in self._leases

    async def save(self, record: SessionRecord) -> None:
        """Fenced write: only the agent holding the session's current epoch may write it."""
        epoch = self._leases.get(record.id)
        if epoch is None:
            raise OwnershipLost(f"session {record.id} is not held by {self.agent_id}")
        async with self._op("save"):
            result = await self._save(
                keys=[self._session(record.id), self._index, self._mine, self._agents],
                args=[
                    self.agent_id,
                    epoch,
                    record.model_dump_json(),
                    _ms(record.expires_at),
                    _now_ms(),
                    "0" if record.status == "ended" else "1",
                    record.id,
                    self._events,
                ],
            )
        if result != "ok":
            self._leases.pop(record.id, None)
            lost = SessionEnded if result == "ended" else OwnershipLost
            raise lost(f"session {record.id}: save refused ({result})")

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self._op("get"):
            row: Any = await self.client.hmget(self._session(session_id), ["data", "owner", "ended"])
        return _record(*row)

    async def delete(self, session_id: str) -> bool:
        return await self.end(session_id) is not None

    async def end(self, session_id: str) -> str | None:
        """Ends a session everywhere; returns its last owner ('' if none) or None if unknown."""
        self._leases.pop(session_id, None)
        script_keys, args = lua.end_call(self.pool, session_id)
        async with self._op("end"):
            owner = await self._end(keys=script_keys, args=args)
        return None if owner is None else str(owner)

    async def list(self) -> list[SessionRecord]:
        async with self._op("list"):
            now = _now_ms()
            ids: Any = await self.client.zrangebyscore(self._index, now, "+inf", start=0, num=LIST_LIMIT)
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hmget(self._session(sid), ["data", "owner", "ended"])
                rows = await pipe.execute()
        return [r for r in (_record(*row) for row in rows) if r is not None]

    # --- ownership ----------------------------------------------------------------------------
    async def allocate(self, record: SessionRecord) -> str | None:
        """Places a new session on the least-loaded live agent of the pool; None when all are full."""
        async with self._op("allocate"):
            reply = await self._allocate(
                keys=[self._agents, self._session(record.id), self._index],
                args=[
                    self._prefix,
                    record.id,
                    record.model_dump_json(),
                    _ms(record.expires_at),
                    _now_ms(),
                    self._events,
                ],
            )
        if reply[0] != "ok":
            if reply[0] == "exists":
                raise StoreUnavailable(f"session id collision for {record.id}")
            return None
        owner = str(reply[1])
        if owner == self.agent_id:
            self._leases[record.id] = int(reply[2])
        return owner

    async def claim(self, session_id: str) -> Claim:
        """Takes a session over unless a live agent holds it (then: where to relay)."""
        async with self._op("claim"):
            reply = await self._claim(
                keys=[self._session(session_id), self._agents],
                args=[
                    self._prefix,
                    self.agent_id,
                    session_id,
                    self.capacity,
                    "1" if self.draining else "0",
                    _now_ms(),
                    self._events,
                ],
            )
        kind = str(reply[0])
        if kind in ("mine", "claimed"):
            record = _record(reply[2], self.agent_id, None)
            if record is None:
                self._leases[session_id] = int(reply[1])
                await self.release(session_id)
                return Claim("missing")
            self._leases[session_id] = int(reply[1])
            return Claim(kind, epoch=int(reply[1]), record=record)  # type: ignore[arg-type]
        if kind == "remote":
            return Claim("remote", owner=str(reply[1]))
        if kind == "refused":
            return Claim("refused", reason=str(reply[1]))
        return Claim("missing")

    async def release(self, session_id: str) -> None:
        epoch = self._leases.pop(session_id, None)
        if epoch is None:
            return
        async with self._op("release"):
            await self._release(
                keys=[self._mine, self._agents, self._session(session_id)],
                args=[self.agent_id, session_id, epoch],
            )

    async def room_elsewhere(self) -> int:
        """Free slots on the pool's other agents that take sessions: where a draining agent's calls can go."""
        async with self._op("room"):
            return int(await self._room(keys=[self._agents], args=[self._prefix, self.agent_id]))

    # --- registry -----------------------------------------------------------------------------
    async def heartbeat(self, url: str, ttl_ms: int, running: Iterable[str]) -> builtins.list[str]:
        """Registers this agent; returns running sessions whose record Redis lost (to rewrite)."""
        async with self._op("heartbeat"):
            lapsed, missing = await self._heartbeat(
                keys=[
                    keys.agent_key(self.pool, self.agent_id),
                    keys.agent_alive_key(self.pool, self.agent_id),
                    self._mine,
                    self._agents,
                    keys.POOLS,
                ],
                args=[
                    self.agent_id,
                    self.pool,
                    url,
                    self.capacity,
                    "1" if self.draining else "0",
                    ttl_ms,
                    _now_ms(),
                    keys.session_key(self.pool, ""),
                    START_GRACE_MS,
                    *running,
                ],
            )
        self._lapsed(bool(lapsed))
        return [str(m) for m in missing]

    def _lapsed(self, lapsed: bool) -> None:
        """Counts a lease found expired after this agent had registered (thread-safe: the lease
        is also renewed from a thread)."""
        if lapsed and self._registered:
            LEASE_LAPSES.inc()
            log.warning("this agent's lease had lapsed; renewed", extra={"agent_id": self.agent_id})
        self._registered = True

    def lease(self, ttl_ms: int, timeout_s: float = 2.0) -> Lease:
        """This agent's alive key on a blocking connection of its own, for a thread to renew
        while the event loop is busy (pool/registry.py)."""
        return Lease(self, ttl_ms, timeout_s)

    async def deregister(self) -> None:
        async with self._op("deregister"), self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.agent_alive_key(self.pool, self.agent_id))
            pipe.zrem(self._agents, self.agent_id)
            pipe.delete(keys.agent_key(self.pool, self.agent_id), self._mine)
            await pipe.execute()

    async def agents(self) -> dict[str, dict[str, str]]:
        """Live agents of the pool with their registry fields plus `sessions` (their load)."""
        async with self._op("agents"):
            members: Any = await self.client.zrange(self._agents, 0, -1, withscores=True)
            async with self.client.pipeline(transaction=False) as pipe:
                for agent_id, _ in members:
                    pipe.hgetall(keys.agent_key(self.pool, agent_id))
                    pipe.exists(keys.agent_alive_key(self.pool, agent_id))
                rows = await pipe.execute()
        out: dict[str, dict[str, str]] = {}
        for i, (agent_id, score) in enumerate(members):
            if rows[2 * i + 1]:
                out[agent_id] = {**rows[2 * i], "sessions": str(int(score))}
        return out

    # --- pub/sub ------------------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Receivers of the message; 0 means nobody listens there (that agent is gone)."""
        async with self._op("publish"):
            return int(await self.client.publish(channel, json.dumps(message, separators=(",", ":"))))

    async def live(self, agent_ids: Iterable[str]) -> set[str]:
        """Which of these agents are alive by the scripts' rule: heartbeat key and inbox listener."""
        ids = sorted(set(agent_ids))
        if not ids:
            return set()
        async with self._op("live"), self.client.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.exists(keys.agent_alive_key(self.pool, agent_id))
            pipe.pubsub_numsub(*(self.inbox_of(a) for a in ids))
            rows = await pipe.execute()
        listening = {str(name) for name, n in rows[-1] if int(n) > 0}
        return {a for i, a in enumerate(ids) if rows[i] and self.inbox_of(a) in listening}

    async def heard(self) -> bool:
        """Whether Redis counts a subscriber on this agent's own inbox."""
        async with self._op("numsub"):
            rows: Any = await self.client.pubsub_numsub(self.inbox)
        return any(int(n) > 0 for _, n in rows)

    def pubsub(self) -> PubSub:
        return self._inbox_client.pubsub(ignore_subscribe_messages=True)

    def inbox_of(self, agent_id: str) -> str:
        return keys.agent_inbox(self.pool, agent_id)


class Lease:
    """The renewal of one agent's alive key, callable from any thread (blocking, bounded by timeout_s)."""

    def __init__(self, store: RedisSessionStore, ttl_ms: int, timeout_s: float) -> None:
        self._store = store
        self.ttl_ms = ttl_ms
        self.timeout_s = timeout_s
        self._key = keys.agent_alive_key(store.pool, store.agent_id)
        self._client = sync_client(store._url, timeout_s)

    def renew(self) -> None:
        started = time.perf_counter()
        try:
            previous = self._client.set(self._key, _now_ms(), px=self.ttl_ms, get=True)
        except RedisError as exc:
            REDIS_ERRORS.labels("lease").inc()
            raise StoreUnavailable(f"redis lease failed: {type(exc).__name__}: {exc}") from exc
        finally:
            REDIS_OP_SECONDS.labels("lease").observe(time.perf_counter() - started)
        self._store._lapsed(previous is None)

    def close(self) -> None:
        close_sync_client(self._client)


def _record(data: str | None, owner: str | None, ended: str | None) -> SessionRecord | None:
    if data is None or ended == "1":
        return None
    record = SessionRecord.model_validate_json(data)
    record.owner = owner or record.owner
    if record.expired(utcnow()):
        return None
    return record


def check_url(url: str, timeout_s: float = 5.0) -> str | None:
    """At start: a problem with REDIS_URL that no retry will fix (bad URL, AUTH, TLS), else None.

    An unreachable server is not such a problem: the agent starts degraded and registers once
    Redis is up, so agents and Redis may start in any order.
    """
    import ssl

    from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

    try:
        client = sync_client(url, timeout_s)
    except (ValueError, TypeError) as exc:
        return f"invalid URL ({exc})"
    try:
        client.ping()
    except AuthenticationError:
        return "authentication failed (check the password/user in the URL)"
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return "server requires authentication (put the password in the URL)"
        return f"server refused: {exc}"
    except (ConnectionError, TimeoutError) as exc:
        cause = exc.__cause__ or exc.__context__
        # A Sentinel's refusal comes folded into "no master found", with the client's repr.
        if any(s in str(exc) for s in ("AuthenticationError", "WRONGPASS", "NOAUTH")):
            return "a Sentinel refused authentication (check sentinel_password in the URL)"
        if isinstance(cause, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc).lower():
            return f"TLS handshake failed ({exc})"
        log.warning(
            "redis not reachable at start; running degraded until it is",
            extra={"redis": describe(url), "error": str(exc)},
        )
    finally:
        close_sync_client(client)
    return None
