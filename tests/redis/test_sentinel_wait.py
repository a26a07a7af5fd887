"""Session writes wait for a replica (docs/redis.md, "Durability"): on the same connection as the write,
and, when no replica answers, for one bounded WAIT only, then counted and written without waiting."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.redis.sentinels import sentinel_group
from tests.redis.servers import redis_server
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.store import keys
from voice_agent.store.redis import RedisSessionStore
from voice_agent.store.redis_metrics import UNREPLICATED_WRITES

SESSION_KEY = keys.session_key("default", "wait-session")


async def saved_twice(url: str, wait_replicas: int | None) -> RedisSessionStore:
    store = RedisSessionStore(url, "default", "w-0", 10, wait_replicas=wait_replicas)
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    await store.heartbeat("http://w-0", 60_000, [])
    record = SessionRecord.new("wait-session", 3600, "", "")
    assert await store.allocate(record) == "w-0"
    for turn in ("one", "two"):
        record.history.append(Message(role="user", content=turn))
        await store.save(record)
    await inbox.aclose()
    return store


def wait_calls(client: object) -> int:
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def test_a_replica_acknowledges_every_record_write(tmp_path: Path) -> None:
    with sentinel_group(tmp_path / "redis", sentinels=1) as group:
        before = UNREPLICATED_WRITES._value.get()
        store = await saved_twice(group.url, 1)
        assert wait_calls(group.primary.client()) == 3  # the allocation and both saves
        assert UNREPLICATED_WRITES._value.get() == before
        replica = group.replica_servers[0]
        assert "two" in str(replica.client().hget(SESSION_KEY, "data"))
        # WAIT counts the writes of its own connection: on another one it would answer at once, a
        # stopped replica included. On the write's own connection, a stopped replica cannot ack it.
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            inbox = store.pubsub()
            await inbox.subscribe(store.inbox)
            assert await store.allocate(SessionRecord.new("unacked", 3600, "", "")) == "w-0"
            await inbox.aclose()
        finally:
            replica.proc.send_signal(signal.SIGCONT)
            await store.close()
        assert UNREPLICATED_WRITES._value.get() == before + 1


async def test_without_a_replica_one_bounded_wait_then_writes_go_on_counted(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        before = UNREPLICATED_WRITES._value.get()
        store = await saved_twice(server.url, 1)  # a replica asked for where there is none
        await store.close()
        assert wait_calls(server.client()) == 1  # the first write waited, timed out; the others did not
        assert UNREPLICATED_WRITES._value.get() == before + 3
        record = server.client().hget(SESSION_KEY, "data")
        assert "two" in str(record)


async def test_a_plain_url_does_not_wait(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        store = await saved_twice(server.url, None)  # the default: no Sentinels, no replica to wait for
        await store.close()
        assert store.wait_replicas == 0
        assert wait_calls(server.client()) == 0
