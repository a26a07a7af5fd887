"""Adaptive end of turn over real WebRTC: a hesitation mid-sentence is not a turn, a finished question
is taken at the short pause. A real agent with its defaults; flite speaks, the offline recognizer hears."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import webrtcvad

from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import overlap, synth
from voice_agent.media.audio import FRAME_MS
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

FIXED_SILENCE_S = 0.5  # VOICE_END_OF_TURN_SILENCE_MS's default: what the fixed detector would wait
ADAPTIVE = 'detector="adaptive"'


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s="1") as proc:
        yield proc


def voiced_part(pcm: bytes, rate: int) -> bytes:
    """The speech in a synthesis, from its first to its last voiced 20 ms frame (webrtcvad, as the
    agent hears it), so a pause put between two parts is the pause the agent hears."""
    vad = webrtcvad.Vad(3)
    step = rate * 2 * FRAME_MS // 1000
    voiced = [i for i in range(0, len(pcm) - step + 1, step) if vad.is_speech(pcm[i : i + step], rate)]
    return pcm[voiced[0] : voiced[-1] + step]


def hesitant(prefix: str, rest: str, pause_ms: int) -> tuple[bytes, int]:
    before, rate = synth(prefix)
    after, _ = synth(rest)
    lead = bytes(rate * 2 * 3 // 10)
    pause = bytes(rate * 2 * pause_ms // 1000)
    return lead + voiced_part(before, rate) + pause + voiced_part(after, rate), rate


def grew(before: dict[str, float], after: dict[str, float], sample: str) -> float:
    return after.get(sample, 0.0) - before.get(sample, 0.0)


async def connected(agent: AgentProcess) -> VoiceClient:
    client = VoiceClient(agent.url)
    await client.create_session()
    await client.connect()
    await client.wait_media()
    await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening")
    return client


async def test_a_pause_after_an_unfinished_phrase_does_not_end_the_turn(agent: AgentProcess) -> None:
    before = await scrape(agent.url)
    client = await connected(agent)
    try:
        pcm, rate = hesitant("I would like to", "play some music", pause_ms=800)
        uid = client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        spoken = await client.speech_ended(uid)
        assert final["_at"] > spoken, f"the turn was taken at the pause: {final['text']!r}"
        assert overlap("would like to play some music", final["text"]) >= 0.6, final
        await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        finals = [e for e in client.events if e["type"] == "transcript" and e["final"]]
        replies = [e for e in client.events if e["type"] == "ai_response" and e["final"]]
        assert len(finals) == len(replies) == 1, (finals, replies)
    finally:
        await client.close()
    after = await scrape(agent.url)
    assert grew(before, after, f'voice_turn_decisions_total{{{ADAPTIVE},outcome="incomplete"}}') >= 1


async def test_a_finished_question_is_taken_before_the_fixed_silence(agent: AgentProcess) -> None:
    before = await scrape(agent.url)
    client = await connected(agent)
    try:
        pcm, rate = synth("please tell me a story")
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        assert overlap("tell me story", final["text"]) >= 0.6, final
        await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
    finally:
        await client.close()
    after = await scrape(agent.url)
    assert grew(before, after, f'voice_turn_decisions_total{{{ADAPTIVE},outcome="complete"}}') == 1
    turns = grew(before, after, f"voice_turn_end_silence_seconds_count{{{ADAPTIVE}}}")
    waited = grew(before, after, f"voice_turn_end_silence_seconds_sum{{{ADAPTIVE}}}")
    assert turns == 1 and waited < FIXED_SILENCE_S, f"{waited:.3f} s of silence: the fixed path's wait"
