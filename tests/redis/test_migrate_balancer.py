"""Drain by migration through a balancer, the short version of `bench/rollout.py`: the draining agent
leaves the rotation at its SIGTERM (as Kubernetes removes its endpoint), so the moved call's
reconnect reaches the agent that has room and the conversation goes on there (docs/deploy.md,
"Rolling a pool").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from bench.liveness import open_call, pool_under_load
from tests.redis.servers import RedisServer
from tests.support.procs import AgentProcess
from tests.support.waits import until
from voice_agent.protocol.signaling import CloseAction, ErrorCode
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-migrate-balancer")]

DRAIN_TIMEOUT_S = 60.0
EXIT_WITHIN_S = 15.0
# Redis frozen this long at a time, thawed only briefly: each command waits up to a freeze, well
# within the agents' 2 s socket timeout, so nothing fails, it is only slow.
FREEZE_S, THAW_S = 1.0, 0.02


def _final_reply(e: dict[str, Any]) -> bool:
    return e["type"] == "ai_response" and e["final"] is True


async def _ask(client: VoiceClient, text: str) -> str:
    mark = len(client.events)
    await client.send({"type": "text", "text": text})
    reply = await client.wait_for(_final_reply, timeout=30, after=mark)
    return str(reply["text"])


async def test_a_call_moved_off_an_agent_out_of_rotation_is_answered_on_the_other(tmp_path: Path) -> None:
    env = {"voice_drain_timeout_s": f"{DRAIN_TIMEOUT_S:g}"}
    async with pool_under_load(tmp_path, 2, burn_s=0, burn=0, env=env) as (pool, url, _):
        call = await open_call(url)
        client = call.client
        try:
            await _ask(client, "remember the word pineapple")
            await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", 30)
            owner_id = str(client.session["owner"])
            owner = pool.agents[owner_id]
            other_id = next(a for a in pool.agents if a != owner_id)

            assert pool.lb is not None
            await asyncio.to_thread(pool.lb.take_out, owner.url)
            pool.watcher.stopping(owner_id)
            sigterm = time.monotonic()
            owner.proc.send_signal(signal.SIGTERM)

            await until(lambda: bool(client.closes), 20.0, "the moved call's close")
            close = client.closes[0]
            assert close.code == 1012 and close.action is CloseAction.RECONNECT, client.closes
            told = [e for e in client.events if e["type"] == "error"]
            assert [e["code"] for e in told] == [ErrorCode.SESSION_MOVED], told

            def resumed() -> bool:
                return any(
                    e["type"] == "session" and e["_at"] > close.at and e["session"]["owner"] == other_id
                    for e in client.events
                )

            await until(resumed, 30.0, f"the session resumed on {other_id}")
            await until(lambda: client.renegotiations > 0, 30.0, "media renegotiated with the new owner")
            await client.wait_media(timeout=30)
            assert "pineapple" in await _ask(client, "repeat what I said")

            assert await asyncio.to_thread(owner.proc.wait, EXIT_WITHIN_S) == 0, owner.logs()[-3000:]
            assert time.monotonic() - sigterm < EXIT_WITHIN_S
            assert len(client.closes) == 1, "one close, the move's: the reconnect landed on a ready agent"
            assert client.new_sessions == 0 and not client.stopped
        finally:
            await client.close()


@contextlib.contextmanager
def frozen_redis(server: RedisServer) -> Iterator[None]:
    """A Redis that stalls (SIGSTOP), thawed for a moment now and then: every store write is slow."""
    assert server.proc is not None
    pid, stop = server.proc.pid, threading.Event()

    def cycle() -> None:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            stop.wait(FREEZE_S)
            os.kill(pid, signal.SIGCONT)
            time.sleep(THAW_S)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(FREEZE_S * 3)
        os.kill(pid, signal.SIGCONT)


def _exit_after(agent: AgentProcess, since: float, timeout_s: float) -> float:
    """Seconds from `since` to the agent's exit (a clean one)."""
    assert agent.proc.wait(timeout_s) == 0, agent.logs()[-3000:]
    return time.monotonic() - since


REFUSED = -1  # the knock found no agent: it had finished its drain and closed its port


async def _knock(agent_url: str, session_id: str, codes: list[int | None]) -> None:
    """A socket for the session straight to the agent (a client whose socket dropped, a relayed
    reconnect), kept open until the agent closes it. When the store thawed just long enough for the
    move to land at once, the agent may be gone before the knock arrives: a client then finds the
    port closed (or the handshake refused) and goes back to the balancer, which counts as an answer."""
    url = agent_url.replace("http://", "ws://") + f"/ws/v2/{session_id}"
    try:
        async with websockets.connect(url, open_timeout=10) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass
            codes.append(ws.close_code)
    except (OSError, websockets.InvalidHandshake):
        codes.append(REFUSED)


async def test_a_socket_that_reaches_a_call_while_its_move_is_saving_does_not_get_it_moved_again(
    tmp_path: Path,
) -> None:
    """Redis is slow while the draining owner moves a call, so the move's save and release take a
    while; a socket for the session reaches the owner in between. It waits for the close and is
    answered as the session then stands. Attached to the closing call, it would be served by nothing,
    the call "moved" again at every poll of the drain, and the agent held until its drain timeout.
    (The conversation going on after a move is the test above: here the knocking socket competes with
    the client's own reconnect for the session, as a stale socket would.)"""
    env = {"voice_drain_timeout_s": f"{DRAIN_TIMEOUT_S:g}"}
    async with pool_under_load(tmp_path, 2, burn_s=0, burn=0, env=env) as (pool, url, _):
        call = await open_call(url)
        client = call.client
        knocks: list[asyncio.Task[None]] = []
        codes: list[int | None] = []
        try:
            await _ask(client, "remember the word pineapple")
            await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", 30)
            session_id, owner_id = str(client.session["id"]), str(client.session["owner"])
            owner = pool.agents[owner_id]
            assert pool.lb is not None
            await asyncio.to_thread(pool.lb.take_out, owner.url)
            pool.watcher.stopping(owner_id)

            with frozen_redis(pool.server):
                sigterm = time.monotonic()
                owner.proc.send_signal(signal.SIGTERM)
                exited = asyncio.create_task(asyncio.to_thread(_exit_after, owner, sigterm, DRAIN_TIMEOUT_S))
                await until(lambda: '"call closed"' in owner.logs(), 20.0, "the move's close")
                knocks.append(asyncio.create_task(_knock(owner.url, session_id, codes)))
                await until(lambda: bool(client.closes), 20.0, "the moved call's close")
            # Well before the drain timeout, which is when a socket attached to the closing call would go.
            try:
                await until(
                    lambda: bool(codes) or knocks[0].done(),
                    DRAIN_TIMEOUT_S * 2 / 3,
                    "the knocking socket answered",
                )
                knocks[0].result()  # a knock that failed in a way no client would expect fails here, at once
            except TimeoutError:
                for name, agent in pool.agents.items():
                    print(f"--- {name}", agent.logs()[-6000:])
                raise
            # Try again (this draining agent takes no session), reconnect (relayed to the agent the
            # moved call's own reconnect reached first, then handed off by the drain), or replaced (the
            # client's own reconnect took the session over from it), or refused (it had already gone).
            assert codes[0] in (1012, 1013, 4409, REFUSED), codes
            # Long before its drain timeout, though every store write of its drain was slow.
            assert await exited < DRAIN_TIMEOUT_S / 2, owner.logs()[-3000:]
            # Each move closed a call of its own: none was "moved" again while it was still closing (the
            # knocking socket may resume the session here when the slow store kept its release from
            # landing, and that call moves in turn).
            logs = owner.logs()
            assert 1 <= logs.count('"call moved"') == logs.count('"call closed"'), logs[-3000:]
        finally:
            for task in knocks:
                task.cancel()
            await client.close()
