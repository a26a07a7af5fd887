"""Liveness, the short version of `bench/liveness.py`: a pool behind a balancer, live calls, and the faults
that used to kill a healthy agent or leave a client in silence (docs/reliability.md, "Liveness under load").

Three agents on one Redis behind the benchmark's round-robin balancer carry four calls whose clients
follow the close codes (`VoiceClient(resume=True)`). Then: one agent is frozen (SIGSTOP) for longer
than the lease used to last, one is replaced the way a rollout does (a new one up, SIGTERM, a drain
that gives live calls a second), and one is killed (SIGKILL). The pool must declare no live agent
dead, no client may be told to stop, and every call must be answering again at the end. The
figures under CPU load (silences, event-loop lag) are the benchmark's; this test holds the behaviour.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import websockets

from bench.liveness import Call, open_call, pool_under_load
from tests.support.waits import until
from voice_agent.protocol.signaling import CloseAction

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability-liveness")]

CALLS = 4
# Longer than the 3 s lease that a stall of the whole process used to outlast; shorter than the
# lease now (pool/registry.py, LEASE_TTL_S).
FREEZE_S = 4.0
DRAIN_S = 1.0


async def answered(call: Call, text: str, within_s: float = 60.0) -> None:
    """A question answered, asked again if a close cut it: the client reconnects by itself meanwhile."""
    client = call.client
    deadline = time.monotonic() + within_s
    while True:
        await until(lambda: client.ws is not None and client.ws.close_code is None, within_s, "a socket")
        mark = len(client.events)
        try:
            await client.send({"type": "text", "text": text})
            await client.wait_for(lambda e: e["type"] == "ai_response" and e.get("final") is True, 20, mark)
            return
        except (TimeoutError, websockets.ConnectionClosed):
            if time.monotonic() > deadline:
                raise


async def test_no_live_agent_is_declared_dead_and_no_call_is_left_behind(tmp_path: Path) -> None:
    env = {"voice_drain_timeout_s": f"{DRAIN_S:g}"}
    async with pool_under_load(tmp_path, 3, burn_s=0, burn=0, env=env) as (pool, url, _):
        calls = list(await asyncio.gather(*(open_call(url) for _ in range(CALLS))))
        try:
            await asyncio.gather(*(answered(c, "hello there") for c in calls))
            frozen, replaced, killed = sorted(pool.agents)

            pool.agents[frozen].proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(FREEZE_S)  # the fault's length, not a wait for something to happen
            pool.agents[frozen].proc.send_signal(signal.SIGCONT)

            await pool.replace(replaced, DRAIN_S)

            pool.watcher.stopping(killed)
            pool.agents[killed].proc.send_signal(signal.SIGKILL)

            await asyncio.gather(*(answered(c, "are you still there") for c in calls))
        finally:
            await asyncio.gather(*(c.client.close() for c in calls), return_exceptions=True)

    assert pool.watcher.deaths == [], "a live agent was declared dead"
    for call in calls:
        client = call.client
        assert not client.stopped, client.closes
        told = [c for c in client.closes if not c.ended_by_client]
        assert all(c.action in (CloseAction.RECONNECT, CloseAction.RETRY_LATER) for c in told), told
