"""What the user says while their call moves reaches the agent that takes the call (docs/deploy.md,
"Rolling a pool"): the client holds its speech from the move's notice until the new media is up, and
says it there with the moment before the notice (the old agent had stopped listening by then).
Real agents, Redis and balancer, real aiortc peers.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from bench.liveness import Pool, open_call, pool_under_load
from tests.support.speech import overlap, synth
from tests.support.waits import until
from voice_agent.protocol.signaling import ErrorCode
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-migrate-speech")]

DRAIN_TIMEOUT_S = 60.0
EXIT_WITHIN_S = 30.0
QUESTION = "what time is it"
# An agent that took a turn on what it heard says so well within this (its end of turn is ~0.2 s).
NO_TURN_WITHIN_S = 3.0
# Longer than a move takes from the drain's start (its settle time, 0.2 s, and the notice after it).
QUIET_S = 2
STARTED = ("status", "processing")  # the agent began answering a turn
# The owner's log lines to start speaking at: its drain begins (the call, quiet at a turn boundary,
# moves 0.2 s later); it stopped the call's pipeline (logged before it saves the call and tells the
# client). A question said at the drain's start could be heard by the owner before its call moves.
DRAINING, STOPPED = '"draining"', '"call closed"'


def _owner(client: VoiceClient) -> str:
    """The agent holding the session now: the last `session` event says, else the creating answer."""
    resumed = [e for e in client.events if e["type"] == "session"]
    return str(resumed[-1]["session"]["owner"] if resumed else client.session["owner"])


async def _listening(client: VoiceClient, after: int) -> None:
    await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", 30, after)


async def _move_while_saying(
    pool: Pool, client: VoiceClient, pcm: bytes, rate: int, at: str
) -> tuple[int, int]:
    """SIGTERM the call's owner (out of the balancer's rotation first, as Kubernetes takes its
    endpoint) and say `pcm` once it logs `at`; returns the utterance and the event index of the
    resumed session on the agent that took the call."""
    owner_id = _owner(client)
    owner = pool.agents[owner_id]
    assert pool.lb is not None
    await asyncio.to_thread(pool.lb.take_out, owner.url)
    pool.watcher.stopping(owner_id)
    mark, closes = len(client.events), len(client.closes)
    owner.proc.send_signal(signal.SIGTERM)
    await until(lambda: at in owner.logs(), 20.0, f"the owner's {at}")
    uid = client.say(pcm, rate)

    await until(lambda: len(client.closes) > closes, 20.0, "the move's close")
    assert client.closes[closes].code == 1012, client.closes
    told = [e["code"] for e in client.events[mark:] if e["type"] == "error"]
    assert told == [ErrorCode.SESSION_MOVED], told
    await until(lambda: _owner(client) != owner_id, 30.0, "the session resumed elsewhere")
    resumed = max(i for i, e in enumerate(client.events) if e["type"] == "session")
    await client.wait_media(timeout=30)
    assert await asyncio.to_thread(owner.proc.wait, EXIT_WITHIN_S) == 0, owner.logs()[-3000:]
    return uid, resumed


def _turn(e: dict[str, Any]) -> bool:
    """A sign the agent heard words: a transcript, a turn being answered, a reply."""
    return e["type"] in ("transcript", "ai_response") or (e["type"], e.get("processing")) == STARTED


async def test_words_said_as_the_call_moves_are_heard_by_the_agent_that_takes_it(tmp_path: Path) -> None:
    env = {"voice_drain_timeout_s": f"{DRAIN_TIMEOUT_S:g}"}
    async with pool_under_load(tmp_path, 3, burn_s=0, burn=0, env=env) as (pool, url, _):
        client = (await open_call(url)).client
        try:
            await _listening(client, 0)
            # Silence first, from the drain's start, longer than the move takes: part of it goes out
            # before the notice and is said again, the rest is held; the agent that takes the call
            # hears all of it (the utterance ends on the new peer connection) and takes no turn on it.
            quiet = bytes(QUIET_S * 16000 * 2)
            uid, resumed = await _move_while_saying(pool, client, quiet, 16000, DRAINING)
            await client.speech_ended(uid, timeout=30)
            with pytest.raises(TimeoutError):
                await client.wait_for(_turn, NO_TURN_WITHIN_S, after=resumed)

            # A question begun as the call moves, once the owner no longer listens: the agent that
            # takes the call answers it, once.
            await _listening(client, resumed)
            pcm, rate = synth(QUESTION)
            uid, resumed = await _move_while_saying(pool, client, pcm, rate, STOPPED)
            final = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], 30, resumed)
            heard = [e["text"] for e in client.events[resumed:] if e["type"] == "transcript"]
            assert heard and overlap(QUESTION, heard[-1]) >= 0.75, (heard, final["text"])
            await _listening(client, client.events.index(final))
            replies = [e for e in client.events[resumed:] if e["type"] == "ai_response" and e["final"]]
            assert len(replies) == 1, [e["text"] for e in replies]
            assert client.new_sessions == 0 and not client.stopped
        finally:
            await client.close()
