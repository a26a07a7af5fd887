"""A real call through the agent process with Deepgram + Groq + ElevenLabs, all on local fakes.

The agent is configured exactly as a user would configure it (three providers, three keys, base
URLs); the fakes assert what the official SDKs sent (model, audio format, history, auth header).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.providers.conftest import DEEPGRAM_KEY, ELEVENLABS_KEY, GROQ_KEY, KEYS, until
from tests.providers.fakes.base import Fault, in_thread
from tests.providers.fakes.chat import FakeChat
from tests.providers.fakes.deepgram import FakeDeepgram
from tests.providers.fakes.elevenlabs import FakeElevenLabs
from tests.support.procs import AgentProcess, running_agent
from tests.support.speech import overlap, synth, transcribe
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

REPLY = "It is noon. The sun is high."


STORY = " ".join(f"This is sentence number {i} of a long story." for i in range(1, 40))


def scripted(messages: list[dict[str, str]]) -> str:
    said = [m["content"] for m in messages if m["role"] == "user"][-1].lower()
    if "story" in said:
        return STORY
    return REPLY if "time" in said else f"You asked about {said.rstrip('?.')}."


@dataclass
class Cloud:
    agent: AgentProcess
    deepgram: FakeDeepgram
    chat: FakeChat
    elevenlabs: FakeElevenLabs


@contextlib.contextmanager
def cloud_agent(tmp: Path, **env: str) -> Iterator[Cloud]:
    deepgram = FakeDeepgram(DEEPGRAM_KEY)
    chat = FakeChat(GROQ_KEY, scripted)
    elevenlabs = FakeElevenLabs(ELEVENLABS_KEY)
    with (
        in_thread(deepgram, chat, elevenlabs),
        running_agent(
            tmp,
            voice_stt="deepgram",
            voice_llm="groq",
            voice_tts="elevenlabs",
            deepgram_api_key=DEEPGRAM_KEY,
            groq_api_key=GROQ_KEY,
            elevenlabs_api_key=ELEVENLABS_KEY,
            deepgram_base_url=deepgram.url,
            groq_base_url=chat.url,
            elevenlabs_base_url=elevenlabs.url,
            voice_provider_timeout_s="3",
            **env,
        ) as agent,
    ):
        yield Cloud(agent, deepgram, chat, elevenlabs)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with cloud_agent(tmp_path_factory.mktemp("cloud"), voice_groq_model="llama-3.3-70b-versatile") as c:
        yield c


async def call(cloud: Cloud) -> VoiceClient:
    client = VoiceClient(cloud.agent.url)
    await client.create_session()
    await client.connect()
    await client.wait_media()
    return client


async def test_spoken_turn_then_typed_turn_through_all_three_providers(cloud: Cloud) -> None:
    cloud.deepgram.transcripts = ["What time is it?"]
    client = await call(cloud)
    try:
        pcm, rate = synth("hello, what time is it")
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=20)
        assert final["text"] == "What time is it?"
        assert any(e["type"] == "transcript" and not e["final"] for e in client.events)
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
        assert (reply["text"], reply["provider"]) == (REPLY, "groq")
        metrics = await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        assert metrics["turn"]["providers"] == {"stt": "deepgram", "llm": "groq", "tts": "elevenlabs"}
        assert metrics["turn"]["voice_to_voice_ms"] > 0
        heard = transcribe(client.recording.pcm_between(reply["_at"] - 1.0), 48000)
        assert overlap(REPLY, heard) >= 0.5, heard

        listen = cloud.deepgram.records[-1]
        assert listen.headers["Authorization"] == f"Token {DEEPGRAM_KEY}"
        assert (listen.query["model"], listen.query["encoding"], listen.query["sample_rate"]) == (
            "nova-3",
            "linear16",
            "16000",
        )
        assert cloud.deepgram.utterances[-1]["transcript"] == "What time is it?"
        assert cloud.deepgram.utterances[-1]["bytes"] >= 16000  # about a second of speech at 16 kHz

        first = cloud.chat.records[-1]
        assert first.headers["Authorization"] == f"Bearer {GROQ_KEY}"
        assert first.body["model"] == "llama-3.3-70b-versatile"
        assert [m["role"] for m in first.body["messages"]] == ["system", "user"]

        tts = cloud.elevenlabs.records
        assert [r.body["text"] for r in tts[-2:]] == ["It is noon.", "The sun is high."]
        assert all(r.query["output_format"] == "pcm_24000" for r in tts)
        assert all(r.headers["xi-api-key"] == ELEVENLABS_KEY for r in tts)

        mark = len(client.events)
        await client.send({"type": "text", "text": "and the date?"})
        second = await client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"], timeout=20, after=mark
        )
        assert second["text"] == "You asked about and the date."
        history = [(m["role"], m["content"]) for m in cloud.chat.records[-1].body["messages"][1:]]
        assert history == [
            ("user", "What time is it?"),
            ("assistant", REPLY),
            ("user", "and the date?"),
        ]
    finally:
        await client.close()


async def test_rejected_key_at_run_time_is_an_error_event_and_the_session_survives(cloud: Cloud) -> None:
    client = await call(cloud)
    try:
        cloud.chat.fail_next(Fault(status=401))
        await client.send({"type": "text", "text": "what time is it"})
        error = await client.wait_for(lambda e: e["type"] == "error", timeout=20)
        assert error["code"] == "llm_auth" and "groq" in error["message"]
        # The failed turn ends with an empty final reply; then the session takes the next turn.
        await client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"] and not e["text"], timeout=20
        )
        mark = len(client.events)
        await client.send({"type": "text", "text": "what time is it"})
        reply = await client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"], after=mark, timeout=20
        )
        assert reply["text"] == REPLY
    finally:
        await client.close()


async def test_stt_and_tts_failures_at_run_time_are_error_events(cloud: Cloud) -> None:
    client = await call(cloud)
    try:
        cloud.deepgram.fail_next(Fault(status=401))
        pcm, rate = synth("hello, what time is it")
        client.say(pcm, rate)
        error = await client.wait_for(lambda e: e["type"] == "error", timeout=20)
        assert error["code"] == "stt_auth" and "deepgram" in error["message"]

        mark = len(client.events)
        cloud.elevenlabs.fail_next(Fault(status=401))
        await client.send({"type": "text", "text": "what time is it"})
        error = await client.wait_for(lambda e: e["type"] == "error", timeout=20, after=mark)
        assert error["code"] == "tts_auth"
        reply = await client.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"], after=mark, timeout=20
        )
        assert reply["text"] == REPLY  # the text still reaches the client; the second sentence is spoken
        await client.wait_for(lambda e: e["type"] == "metrics", after=mark, timeout=30)
    finally:
        await client.close()


async def test_barge_in_closes_the_llm_stream_upstream(cloud: Cloud) -> None:
    client = await call(cloud)
    cloud.chat.chunk_delay_s = 0.05  # ~17 s for the whole story: only a barge-in ends it early
    try:
        await client.send({"type": "text", "text": "tell me a story"})
        await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "speaking", timeout=20)
        story = cloud.chat.records[-1]
        assert story.outcome == "open"
        await client.send({"type": "interrupt"})
        await until(lambda: story.outcome != "open", timeout=10, what="the LLM request to end")
        assert story.outcome == "client_closed"
        assert len(story.sent) < STORY.count(" ") // 2  # the request stopped, it did not run out
        await until(
            lambda: all(r.outcome != "open" for r in cloud.elevenlabs.records), what="TTS requests ended"
        )
    finally:
        cloud.chat.chunk_delay_s = 0.0
        await client.close()


async def test_keys_never_reach_logs_or_metrics(cloud: Cloud) -> None:
    client = await call(cloud)  # this test makes its own traffic: a rejected and an answered turn
    try:
        cloud.chat.fail_next(Fault(status=401))
        await client.send({"type": "text", "text": "what time is it"})
        await client.wait_for(lambda e: e["type"] == "error", timeout=20)
        await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
        mark = len(client.events)
        await client.send({"type": "text", "text": "what time is it"})
        await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], after=mark, timeout=20)
    finally:
        await client.close()
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(cloud.agent.url + "/metrics")).text
    assert 'voice_provider_request_seconds_count{phase="first",provider="groq",stage="llm"}' in metrics
    assert 'voice_provider_errors_total{provider="groq",stage="llm",type="auth"}' in metrics
    logs = cloud.agent.logs()
    for key in KEYS:
        assert key not in metrics and key not in logs


async def test_offline_fallback_answers_when_groq_is_down(tmp_path: Path) -> None:
    with cloud_agent(tmp_path, voice_llm_fallback="true") as fallback:
        fallback.chat.fail_next(*[Fault(status=503) for _ in range(3)])
        client = await call(fallback)
        try:
            await client.send({"type": "text", "text": "tell me the time"})
            reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
            assert reply["provider"] == "local" and reply["text"].startswith("It is")
            assert not any(e["type"] == "error" for e in client.events)
        finally:
            await client.close()


@pytest.fixture(scope="module")
def endpointing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    # The local VAD alone would wait 4 s of silence: a turn that ends sooner was ended by Deepgram.
    with cloud_agent(
        tmp_path_factory.mktemp("endpointing"),
        voice_stt_endpointing="provider",
        voice_deepgram_endpointing_ms="300",
        voice_turn_detector="fixed",
        voice_end_of_turn_silence_ms="4000",
    ) as c:
        yield c


async def test_deepgram_endpointing_ends_the_turn_before_the_local_vad(endpointing: Cloud) -> None:
    endpointing.deepgram.transcripts = ["What time is it?"]
    client = await call(endpointing)
    try:
        pcm, rate = synth("hello, what time is it")
        uid = client.say(pcm, rate)
        spoken = await client.speech_ended(uid)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=20)
        assert final["text"] == "What time is it?"
        assert final["_at"] - spoken < 3.0, "the turn waited for the VAD, not for Deepgram's endpoint"
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
        assert reply["text"] == REPLY
        listen = endpointing.deepgram.records[-1]
        assert (listen.query["endpointing"], listen.query["utterance_end_ms"]) == ("300", "1000")
        assert endpointing.deepgram.endpoints == 1
    finally:
        await client.close()


def test_provider_endpointing_needs_a_provider_that_endpoints() -> None:
    from voice_agent.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="VOICE_STT_ENDPOINTING=provider"):
        load_settings(stt="local", stt_endpointing="provider")
