"""Barge-in over real WebRTC: talking over the agent silences it and the next turn is answered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import sounds_like, synth, transcribe
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# Frames already in flight when the agent stops (RTP transit, the receiver's jitter buffer, and on
# a loaded CI machine the client's own scheduling). How fast it stops is a benchmark (bench.agent);
# this test is about whether it stops and stays silent while the user talks.
IN_FLIGHT_S = 0.5


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s="1") as proc:
        yield proc


async def test_speaking_over_the_agent_stops_its_audio_and_is_answered(agent: AgentProcess) -> None:
    before = await scrape(agent.url)
    client = VoiceClient(agent.url)
    try:
        await client.create_session()
        await client.connect()
        await client.wait_media()
        pcm, rate = synth("please tell me a story")
        client.say(pcm, rate)
        story = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        assert "story" in story["text"].lower() or len(story["text"]) > 200, story
        speaking = await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "speaking")
        # Let about a second of the story arrive, then talk over it.
        await client.wait_voiced(50, after=speaking["_at"], timeout=15)

        # Long enough that the silence it must get is well beyond the frames in flight.
        pcm, rate = synth("hello there, I would like to ask you something about the weather today")
        uid = client.say(pcm, rate)
        ack = await client.wait_for(
            lambda e: e["type"] == "status" and e["processing"] == "listening" and e["_at"] > speaking["_at"],
            timeout=10,
        )
        spoken_until = await client.speech_ended(uid)
        recording = client.recording
        leaked = recording.voiced_frames_after(ack["_at"] + IN_FLIGHT_S) - recording.voiced_frames_after(
            spoken_until
        )
        assert leaked == 0, f"{leaked} voiced frames of the interrupted turn played after barge-in"

        reply = await client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"] and e["_at"] > ack["_at"], timeout=30
        )
        assert "story" not in reply["text"].lower(), reply
        metrics = await client.wait_for(
            lambda e: e["type"] == "metrics" and e["_at"] > reply["_at"], timeout=30
        )
        assert metrics["turn"]["voice_to_voice_ms"] > 0
        heard = transcribe(client.recording.pcm_between(reply["_at"] - 1.0), 48000)
        assert sounds_like(reply["text"], heard) >= 0.4, (reply["text"], heard)
    finally:
        await client.close()

    after = await scrape(agent.url)
    assert after["voice_barge_ins_total"] >= before.get("voice_barge_ins_total", 0) + 1
    assert after['voice_turns_total{outcome="interrupted"}'] >= 1
    assert after['voice_turns_total{outcome="completed"}'] >= 1
    assert after["voice_voice_to_voice_seconds_count"] >= 1
    assert after["voice_llm_first_token_seconds_count"] >= 2
