"""The sessions API against a real redis-server, below kubectl: the copy a list answers from
(sessions/cache.py) shows what Redis holds when the list begins, and a delete lets the owning call
stop before the session ends in Redis (docs/operator.md, "Sessions in kubectl").

Sessions are written by the agents' own store code; the owner of a deleted session is a store that
hears its inbox and saves its record as a call does when it stops.
"""

import asyncio
import datetime
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.operator.harness import RedisServer, wait_for
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.store import keys
from voice_agent.store.base import OwnershipLost
from voice_agent.store.redis import RedisSessionStore
from voice_operator import constants as c
from voice_operator.redis_clients import RedisClients
from voice_operator.sessions import objects as o
from voice_operator.sessions.cache import SessionCache
from voice_operator.sessions.store import SessionReader, SessionsUnavailable

AGENT = "alpha-0"


@pytest_asyncio.fixture()
async def store(redis_server: RedisServer) -> AsyncIterator[RedisSessionStore]:
    """A live agent of team-a/alpha as the registry sees it: heartbeat, inbox heard."""
    agent = RedisSessionStore(redis_server.url, c.pool_id("team-a", "alpha"), AGENT, 100)
    inbox = agent.pubsub()
    await inbox.subscribe(agent.inbox)
    await agent.heartbeat(f"http://{AGENT}:8000", 600_000, [])
    yield agent
    await inbox.aclose()  # type: ignore[no-untyped-call]
    await agent.close()


@pytest_asyncio.fixture()
async def reader() -> AsyncIterator[SessionReader]:
    clients = RedisClients()
    yield SessionReader(clients)
    await clients.close()


@pytest_asyncio.fixture()
async def cache(reader: SessionReader) -> AsyncIterator[SessionCache]:
    copy = SessionCache(reader)
    yield copy
    await copy.close()


def alpha(redis_server: RedisServer) -> o.PoolRef:
    return o.PoolRef("team-a", "alpha", redis_server.url)


async def allocate(store: RedisSessionStore, ttl_s: int = 3600) -> SessionRecord:
    record = SessionRecord.new(uuid.uuid4().hex, ttl_s, "", store.pool)
    assert await store.allocate(record) == AGENT
    return record


async def listed(cache: SessionCache, pool: o.PoolRef) -> dict[str, list[object]]:
    """The rows a list answers, as kubectl reads them: id -> cells."""
    now = datetime.datetime.now(datetime.UTC)
    table = json.loads(o.table_json(await cache.rows([pool]), "1", now))
    return {row["cells"][0]: row["cells"] for row in table["rows"]}


async def test_a_list_shows_what_redis_holds_when_it_begins(
    redis_server: RedisServer, store: RedisSessionStore, cache: SessionCache
) -> None:
    pool = alpha(redis_server)
    first = await allocate(store)
    assert list(await listed(cache, pool)) == [first.id]

    # No wait between a change and the list after it: each list waits for the events before it.
    newcomer = await allocate(store)
    assert set(await listed(cache, pool)) == {first.id, newcomer.id}
    first.status = "connected"
    first.history = [Message(role="user", content="hello"), Message(role="assistant", content="hi")]
    await store.save(first)
    assert (await listed(cache, pool))[first.id][3:5] == ["connected", 1]
    await store.end(newcomer.id)
    assert list(await listed(cache, pool)) == [first.id]

    # A TTL passing announces nothing: the expiry time leaves it out.
    brief = await allocate(store, ttl_s=1)
    assert brief.id in await listed(cache, pool)

    async def expired() -> bool:
        return brief.id not in await listed(cache, pool)

    await wait_for(expired, 10, "the expired session to leave the list")


async def test_a_change_no_event_announced_is_read_at_the_next_resync(
    redis_server: RedisServer, store: RedisSessionStore, reader: SessionReader
) -> None:
    pool = alpha(redis_server)
    cache = SessionCache(reader, resync_s=0.1)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        record = await allocate(store)
        assert (await listed(cache, pool))[record.id][3] == "created"
        record.status = "disconnected"
        # As a restore or a hand edit writes: no script, no event.
        await client.hset(keys.session_key(pool.pool_id, record.id), "data", record.model_dump_json())

        async def resynced() -> bool:
            return (await listed(cache, pool))[record.id][3] == "disconnected"

        await wait_for(resynced, 10, "the resync to read the edited record")
    finally:
        await client.aclose()
        await cache.close()


async def test_a_dropped_events_connection_makes_the_next_list_read_redis_afresh(
    redis_server: RedisServer, store: RedisSessionStore, reader: SessionReader
) -> None:
    """What was published while the connection was down is lost: the copy must not go on."""
    pool = alpha(redis_server)
    cache = SessionCache(reader, resync_s=3600)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        record = await allocate(store)
        assert (await listed(cache, pool))[record.id][3] == "created"
        record.status = "disconnected"
        await client.hset(keys.session_key(pool.pool_id, record.id), "data", record.model_dump_json())
        assert await client.client_kill_filter(_type="pubsub") >= 1

        async def read_afresh() -> bool:
            return (await listed(cache, pool))[record.id][3] == "disconnected"

        await wait_for(read_afresh, 10, "a list after the dropped connection to read Redis afresh")
    finally:
        await client.aclose()
        await cache.close()


async def test_a_redis_that_is_down_fails_the_list_instead_of_serving_the_copy(
    redis_server: RedisServer, store: RedisSessionStore, cache: SessionCache
) -> None:
    pool = alpha(redis_server)
    record = await allocate(store)
    assert list(await listed(cache, pool)) == [record.id]
    await store.close()
    redis_server.stop()
    with pytest.raises(SessionsUnavailable, match="cannot read the sessions of pool team-a/alpha"):
        await cache.rows([pool])


async def test_a_delete_lets_the_owning_call_stop_before_the_session_ends(
    redis_server: RedisServer, store: RedisSessionStore, reader: SessionReader
) -> None:
    """The owner hears `end` while the session is still its own, so the save its call makes as it
    stops is accepted; a save refused as ended would close the client with 4409, not 1000."""
    pool = alpha(redis_server)
    record = await allocate(store)
    record.status = "connected"
    await store.save(record)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    heard: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)

    async def owner() -> None:
        async for message in inbox.listen():
            if message["type"] == "message" and json.loads(message["data"])["k"] == "end":
                ended = await client.hget(keys.session_key(pool.pool_id, record.id), "ended")
                record.status = "ended"
                try:
                    await store.save(record)
                except OwnershipLost as e:
                    heard.set_result(f"the stopping call's save was refused: {e}")
                    return
                heard.set_result(None if ended is None else "the session had ended before its owner heard")
                return

    listening = asyncio.create_task(owner())
    try:
        (session,) = await reader.pool_sessions(pool, [record.id])
        assert await reader.end(session)
        assert await asyncio.wait_for(heard, 10) is None
        assert await reader.pool_sessions(pool, [record.id]) == []
        assert not await reader.end(session)
    finally:
        listening.cancel()
        await inbox.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def test_a_session_held_by_no_agent_is_ended(
    redis_server: RedisServer, store: RedisSessionStore, reader: SessionReader
) -> None:
    pool = alpha(redis_server)
    record = await allocate(store)
    await store.release(record.id)  # suspended: resumable, held by none
    (session,) = await reader.pool_sessions(pool, [record.id])
    assert await reader.end(session)
    assert await reader.pool_sessions(pool, [record.id]) == []
