"""The lease (alive key) under event-loop stalls: renewed from outside the loop, lapsing when it is stuck.

A saturated machine stalls an agent's event loop for seconds (docs/reliability.md, "Liveness under
load"). Here the stall is made on purpose, by blocking the test's own loop, which runs a real
registry against a real redis-server, while another thread reads the key the pool judges by.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.redis.servers import RedisServer, redis_server
from tests.support.waits import until
from voice_agent.pool import registry
from voice_agent.pool.registry import Registry
from voice_agent.store import keys
from voice_agent.store.redis import RedisSessionStore

pytestmark = [pytest.mark.xdist_group("redis-liveness")]

AGENT = "stalled"
# The lease is shortened so that a stall longer than it is short enough for a test: a key that
# survives this stall was renewed while the loop could not run.
LEASE_S = 1.5
STALL_S = 3.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as s:
        yield s


@pytest.fixture
async def member(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisSessionStore]:
    """A registered pool member: lease renewed, inbox heard."""
    monkeypatch.setattr(registry, "LEASE_TTL_S", LEASE_S)
    store = RedisSessionStore(server.url, "default", AGENT, 4)
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    beats = Registry(store, "http://stalled", running=list, on_lost_records=lambda ids: None)
    await beats.start()
    try:
        yield store
    finally:
        await beats.stop()
        await inbox.aclose()  # type: ignore[no-untyped-call]
        await store.close()


class LeaseWatch:
    """Reads the lease's time left every 20 ms from a thread of its own (-2: the key is gone)."""

    def __init__(self, server: RedisServer) -> None:
        self.client = server.client()
        self.left: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        key = keys.agent_alive_key("default", AGENT)
        while not self._stop.is_set():
            self.left.append(int(self.client.pttl(key)))
            time.sleep(0.02)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def block_the_loop(seconds: float) -> None:
    """The stall itself, what a saturated CPU does to an agent: nothing on the calling loop runs."""
    time.sleep(seconds)


def lapses() -> float:
    return REGISTRY.get_sample_value("voice_redis_lease_lapses_total") or 0.0


async def test_a_stalled_event_loop_does_not_let_the_lease_lapse(
    server: RedisServer, member: RedisSessionStore
) -> None:
    before = lapses()
    with LeaseWatch(server) as watch:
        block_the_loop(STALL_S)
    assert watch.left, "the watch read nothing"
    assert min(watch.left) > 0, f"the lease lapsed during a {STALL_S} s stall: {watch.left}"
    assert await member.live([AGENT]) == {AGENT}, "the pool's rule still sees the agent alive"
    assert lapses() == before


async def test_a_loop_stuck_for_good_lets_the_lease_lapse_and_the_lapse_is_counted(
    server: RedisServer, member: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent whose loop serves nobody is better declared dead; back, it counts the lapse."""
    monkeypatch.setattr(registry, "LOOP_WEDGED_S", 1.0)
    before = lapses()
    with LeaseWatch(server) as watch:
        block_the_loop(1.0 + LEASE_S + 1.5)
    assert -2 in watch.left, "the lease outlived a stuck loop"
    await until(lambda: lapses() > before, 10.0, "the lapse counted")
    assert await member.live([AGENT]) == {AGENT}, "renewed once the loop runs again"
