"""End to end over real WebRTC on loopback: an aiortc client talks to a real agent process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.support.procs import AgentProcess, running_agent
from tests.support.speech import overlap, sounds_like, synth, transcribe
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s="1") as proc:
        yield proc


async def test_spoken_question_gets_transcript_reply_and_matching_speech(agent: AgentProcess) -> None:
    client = VoiceClient(agent.url)
    try:
        await client.create_session()
        await client.connect()
        await client.wait_media()
        pcm, rate = synth("hello, what time is it")
        said_at = time.monotonic()  # the call's first words: all agent audio after this is the reply
        client.say(pcm, rate)

        interim = await client.wait_for(lambda e: e["type"] == "transcript" and not e["final"], timeout=20)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=20)
        assert overlap("time is it", final["text"]) >= 0.66, final
        assert interim["_at"] <= final["_at"]

        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
        assert reply["text"].startswith("It is"), reply
        metrics = await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        assert metrics["turn"]["voice_to_voice_ms"] > 0

        heard = transcribe(client.recording.pcm_between(said_at), 48000)
        assert sounds_like(reply["text"], heard) >= 0.5, (reply["text"], heard)
    finally:
        await client.close()

    per_call = [
        line
        for line in map(json.loads, agent.logs().splitlines())
        if line.get("logger", "").startswith(
            ("voice_agent.sessions.call", "voice_agent.pipeline", "voice_agent.media.peer")
        )
    ]
    assert per_call, "the call logged nothing"
    assert all(line.get("session_id") == client.session["id"] for line in per_call), per_call[:3]
