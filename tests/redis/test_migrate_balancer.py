"""Drain by migration through a balancer, the short version of `bench/rollout.py`: the draining agent
leaves the rotation at its SIGTERM (as Kubernetes removes its endpoint), so the moved call's
reconnect reaches the agent that has room and the conversation goes on there (docs/deploy.md,
"Rolling a pool").
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bench.liveness import open_call, pool_under_load
from tests.support.waits import until
from voice_agent.protocol.signaling import CloseAction, ErrorCode
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-migrate-balancer")]

DRAIN_TIMEOUT_S = 60.0
EXIT_WITHIN_S = 15.0


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
