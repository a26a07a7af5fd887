"""RedisSessionStore against a real redis-server: persistence, TTL, allocation, fencing, registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio.client import PubSub

from tests.redis.servers import RedisServer, redis_server
from tests.support.waits import until
from voice_agent.protocol.sessions import Message, SessionRecord, utcnow
from voice_agent.store import keys
from voice_agent.store.base import OwnershipLost, SessionEnded
from voice_agent.store.redis import RedisSessionStore

POOL = "p1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as srv:
        yield srv


class Agents:
    """In-process stand-ins for agents: a store each, registered and listening on their inbox."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stores: dict[str, RedisSessionStore] = {}
        self.subs: dict[str, PubSub] = {}

    async def add(self, agent_id: str, capacity: int = 2, listen: bool = True) -> RedisSessionStore:
        store = RedisSessionStore(self.url, POOL, agent_id, capacity, max_connections=8)
        self.stores[agent_id] = store
        if listen:
            await self.listen(agent_id)
        await store.heartbeat(f"http://{agent_id}", 3000, [])
        return store

    async def listen(self, agent_id: str) -> None:
        sub = self.stores[agent_id].pubsub()
        await sub.subscribe(self.stores[agent_id].inbox)
        self.subs[agent_id] = sub

    async def die(self, agent_id: str) -> None:
        """A killed process: its subscription disappears with its connection.

        Redis notices the closed connection a moment after the client closes it, so wait (bounded)
        until the inbox has no listener before the test goes on to depend on it.
        """
        store = self.stores[agent_id]
        await self.subs.pop(agent_id).aclose()  # type: ignore[no-untyped-call]

        async def no_listener() -> bool:
            counts = await store.client.pubsub_numsub(store.inbox)
            return int(counts[0][1]) == 0

        await until(no_listener, timeout=5.0, what=f"agent {agent_id}'s inbox to lose its listener")

    async def close(self) -> None:
        for sub in self.subs.values():
            await sub.aclose()  # type: ignore[no-untyped-call]
        for store in self.stores.values():
            await store.close()


@pytest.fixture
async def agents(server: RedisServer) -> AsyncIterator[Agents]:
    group = Agents(server.url)
    try:
        yield group
    finally:
        await group.close()


def new_record(ttl_s: int = 60) -> SessionRecord:
    import secrets

    return SessionRecord.new(secrets.token_urlsafe(8), ttl_s, "", POOL)


async def test_record_roundtrip_ttl_refresh_and_expiry(server: RedisServer, agents: Agents) -> None:
    a = await agents.add("a")
    rec = new_record(ttl_s=60)
    assert await a.allocate(rec) == "a"
    rec.history.append(Message(role="user", content="hello"))
    rec.status = "connected"
    await a.save(rec)

    got = await a.get(rec.id)
    assert got is not None and got.owner == "a" and got.history[0].content == "hello"
    sync = server.client()
    key = keys.session_key(POOL, rec.id)
    assert 55_000 < sync.pttl(key) <= 60_000

    rec.expires_at = utcnow() + timedelta(seconds=600)  # activity refreshes the TTL
    await a.save(rec)
    assert 595_000 < sync.pttl(key) <= 600_000
    assert [r.id for r in await a.list()] == [rec.id]

    rec.expires_at = utcnow() + timedelta(milliseconds=300)
    await a.save(rec)
    for _ in range(100):  # bounded: 5 s
        if not sync.exists(key):
            break
        await asyncio.sleep(0.05)
    assert not sync.exists(key), "redis expires the record at expires_at"
    assert await a.get(rec.id) is None
    assert await a.list() == []


async def test_allocation_least_loaded_skips_draining_stale_and_dead(agents: Agents) -> None:
    a = await agents.add("a", capacity=3)
    b = await agents.add("b", capacity=3)
    owners = [await a.allocate(new_record()) for _ in range(4)]
    assert sorted(str(o) for o in owners) == ["a", "a", "b", "b"], "least-loaded first, alternating"

    b.draining = True
    await b.heartbeat("http://b", 3000, [])
    assert await a.allocate(new_record()) == "a"

    c = await agents.add("c", capacity=3)
    await agents.die("c")  # process gone: no inbox listener even though the heartbeat is fresh
    assert await a.allocate(new_record()) is None, "a full, b draining, c dead -> pool full"
    assert c.agent_id in await a.agents()

    sync_agents = await a.agents()
    assert sync_agents["a"]["sessions"] == "3" and sync_agents["a"]["capacity"] == "3"


async def test_claim_fences_the_old_owner(agents: Agents) -> None:
    a = await agents.add("a")
    b = await agents.add("b")
    rec = new_record()
    assert await a.allocate(rec) == "a"
    claim = await b.claim(rec.id)
    assert claim.kind == "remote" and claim.owner == "a", "a live owner keeps its session"

    await agents.die("a")
    claim = await b.claim(rec.id)
    assert claim.kind == "claimed" and claim.epoch == 2 and claim.record is not None

    rec.transcript = "zombie write"
    with pytest.raises(OwnershipLost):
        await a.save(rec)  # a was presumed dead; its write must not land
    got = await b.get(rec.id)
    assert got is not None and got.owner == "b" and got.transcript == ""
    loads = await b.agents()
    assert loads["b"]["sessions"] == "1" and loads["a"]["sessions"] == "0"


async def test_concurrent_claims_have_one_winner(agents: Agents) -> None:
    a = await agents.add("a")
    others = [await agents.add(f"x{i}", capacity=5) for i in range(5)]
    rec = new_record()
    await a.allocate(rec)
    await agents.die("a")
    claims = await asyncio.gather(*(s.claim(rec.id) for s in others))
    winners = [c for c in claims if c.kind == "claimed"]
    assert len(winners) == 1
    assert all(c.kind == "remote" for c in claims if c.kind != "claimed")


async def test_end_leaves_a_tombstone_that_blocks_late_writes(agents: Agents) -> None:
    a = await agents.add("a")
    rec = new_record()
    await a.allocate(rec)
    await a.claim(rec.id)
    assert await a.end(rec.id) == "a"
    assert await a.get(rec.id) is None
    with pytest.raises(OwnershipLost):
        await a.save(rec)
    assert (await a.claim(rec.id)).kind == "missing"
    assert (await a.agents())["a"]["sessions"] == "0"


async def test_a_save_after_an_end_elsewhere_says_ended_not_taken_over(agents: Agents) -> None:
    """Ended through another agent (or kubectl delete) while its owner still holds it: the owner's next
    save is refused as ended, so its call closes as ended (1000), not as moved to another agent."""
    a, b = await agents.add("a"), await agents.add("b")
    rec = new_record()
    await a.allocate(rec)
    await a.claim(rec.id)
    assert await b.end(rec.id) == "a"
    with pytest.raises(SessionEnded):
        await a.save(rec)


async def test_heartbeat_reconciles_and_reports_lost_records(server: RedisServer, agents: Agents) -> None:
    a = await agents.add("a", capacity=5)
    kept, dropped = new_record(), new_record()
    await a.allocate(kept)
    await a.allocate(dropped)
    server.client().hset(keys.session_key(POOL, dropped.id), "assigned_ms", 0)  # an old, never-started one
    assert await a.heartbeat("http://a", 3000, [kept.id]) == []
    assert (await a.agents())["a"]["sessions"] == "1"

    server.client().flushall()  # Redis came back empty
    assert await a.heartbeat("http://a", 3000, [kept.id]) == [kept.id]
    await a.save(kept)  # the live call writes it back
    assert (await a.get(kept.id)) is not None
    assert (await a.agents())["a"]["sessions"] == "1"


async def test_stale_agent_drops_out_of_the_pool(server: RedisServer, agents: Agents) -> None:
    a = await agents.add("a", capacity=1)
    b = await agents.add("b", capacity=1)
    await b.heartbeat("http://b", 200, [])  # b stops beating: its entry lapses after 200 ms
    alive_b = keys.agent_alive_key(POOL, "b")
    for _ in range(100):  # bounded: 5 s
        if not server.client().exists(alive_b):
            break
        await asyncio.sleep(0.05)
    assert await a.allocate(new_record()) == "a"
    assert await a.allocate(new_record()) is None, "a is full and b is stale"
    assert "b" not in server.client().zrange(keys.agents_key(POOL), 0, -1), "the allocation pruned b"
    await b.heartbeat("http://b", 3000, [])  # it comes back: registered again
    assert await a.allocate(new_record()) == "b"
