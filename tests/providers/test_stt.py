"""Deepgram live transcription through the official SDK against the fake /v1/listen socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.providers.conftest import DEEPGRAM_KEY, KEYS, cloud_settings, sample, until
from tests.providers.fakes.base import Fault
from tests.providers.fakes.deepgram import FakeDeepgram
from tests.support.speech import synth
from voice_agent.providers.base import ProviderError, Providers, STTProvider
from voice_agent.settings import Settings

Build = Callable[[Settings], Providers]
FRAME = 640  # 20 ms at 16 kHz


def speech() -> bytes:
    pcm, rate = synth("what time is it")
    assert rate == 16000
    return pcm


async def utterance(
    stt: STTProvider, state: dict[str, Any], pcm: bytes, interims: list[str] | None = None
) -> str:
    stream = await stt.open_stream((interims if interims is not None else []).append, state)
    try:
        for i in range(0, len(pcm), FRAME):
            await stream.send(pcm[i : i + FRAME])
            await asyncio.sleep(0)
        return await stream.finish()
    finally:
        await stream.aclose()


async def failure(stt: STTProvider, state: dict[str, Any]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await utterance(stt, state, speech())
    for key in KEYS:
        assert key not in info.value.message
    return info.value


async def test_transcribes_with_interims_on_nova3_linear16(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram)).stt
    deepgram.transcripts = ["What time is it?"]
    interims: list[str] = []
    state: dict[str, Any] = {}
    assert await utterance(stt, state, speech(), interims) == "What time is it?"
    assert interims[0] == "What" and interims[-1] == "What time is it?"
    rec = deepgram.records[-1]
    assert rec.headers["Authorization"] == f"Token {DEEPGRAM_KEY}"
    assert rec.query | {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000"} == rec.query
    assert rec.query["channels"] == "1" and rec.query["interim_results"] == "true"
    assert deepgram.utterances[0]["bytes"] == len(speech())
    await stt.release(state)


async def test_socket_is_reused_and_kept_alive_between_utterances(
    deepgram: FakeDeepgram, built: Build
) -> None:
    stt = built(cloud_settings(deepgram=deepgram, deepgram_keepalive_s=0.1)).stt
    deepgram.transcripts = ["one", "two"]
    state: dict[str, Any] = {}
    assert await utterance(stt, state, speech()) == "one"
    await until(lambda: deepgram.keepalives >= 2, what="KeepAlive while the user is silent")
    assert await utterance(stt, state, speech()) == "two"
    assert len(deepgram.records) == 1
    await stt.release(state)
    await until(lambda: deepgram.records[0].outcome == "complete", what="CloseStream on release")
    assert deepgram.records[0].messages[-1] == {"type": "CloseStream"}


async def test_idle_socket_is_closed_and_reopened(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, deepgram_keepalive_s=0.1, deepgram_idle_close_s=0.2)).stt
    state: dict[str, Any] = {}
    await utterance(stt, state, speech())
    await until(lambda: deepgram.records[0].outcome == "complete", what="idle close")
    assert await utterance(stt, state, speech()) == "hello there"
    assert len(deepgram.records) == 2
    await stt.release(state)


async def test_drop_mid_utterance_reconnects_and_replays_the_turn(
    deepgram: FakeDeepgram, built: Build
) -> None:
    stt = built(cloud_settings(deepgram=deepgram)).stt
    deepgram.transcripts = ["what time is it"]
    deepgram.fail_next(Fault(mode="drop", after=20))
    state: dict[str, Any] = {}
    assert await utterance(stt, state, speech()) == "what time is it"
    assert len(deepgram.records) == 2
    assert deepgram.records[1].audio_bytes == len(speech())  # the whole utterance, replayed
    await stt.release(state)


async def test_invalid_key(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, DEEPGRAM_API_KEY="bad-key")).stt
    before = sample("voice_provider_errors_total", provider="deepgram", stage="stt", type="auth")
    err = await failure(stt, {})
    assert (err.code, err.provider) == ("stt_auth", "deepgram") and "HTTP 401" in err.message
    assert len(deepgram.records) == 1
    assert sample("voice_provider_errors_total", provider="deepgram", stage="stt", type="auth") == before + 1


async def test_429_handshake_is_retried_after_retry_after(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram)).stt
    deepgram.fail_next(Fault(status=429, headers={"Retry-After": "0.1"}))
    state: dict[str, Any] = {}
    assert await utterance(stt, state, speech()) == "hello there"
    assert [r.status for r in deepgram.records] == [429, 200]
    await stt.release(state)


async def test_429_retries_are_bounded(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, provider_max_retries=1)).stt
    deepgram.fail_next(*[Fault(status=429, headers={"Retry-After": "0"}) for _ in range(3)])
    assert (await failure(stt, {})).code == "stt_rate_limited"
    assert len(deepgram.records) == 2


async def test_malformed_results(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, provider_max_retries=0)).stt
    deepgram.fail_next(Fault(mode="malformed", after=5))
    assert (await failure(stt, {})).code == "stt_bad_response"


async def test_silent_provider_times_out(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, provider_timeout_s=0.3)).stt
    deepgram.fail_next(Fault(mode="stall", after=1))
    assert (await failure(stt, {})).code == "stt_timeout"


async def test_unanswered_finalize_keeps_what_was_heard(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram, provider_timeout_s=0.3)).stt
    deepgram.transcripts = ["what time is it"]
    deepgram.fail_next(Fault(mode="stall", after=len(speech()) // 640))
    state: dict[str, Any] = {}
    assert await utterance(stt, state, speech()) == "what time is"  # the last interim: better than nothing
    assert await utterance(stt, state, speech()) == "what time is it"  # the next turn: a fresh socket
    assert len(deepgram.records) == 2
    await stt.release(state)


async def test_abandoned_utterance_closes_its_socket(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram)).stt
    state: dict[str, Any] = {}
    stream = await stt.open_stream(lambda _: None, state)
    await stream.send(speech()[:6400])
    await until(lambda: deepgram.open_connections == 1, what="socket open")
    await stream.aclose()
    await until(lambda: deepgram.open_connections == 0, what="socket closed")
    assert await utterance(stt, state, speech()) == "hello there"  # a fresh socket, no stale results
    await stt.release(state)


async def test_segments_finalized_mid_utterance_are_joined(deepgram: FakeDeepgram, built: Build) -> None:
    stt = built(cloud_settings(deepgram=deepgram)).stt
    deepgram.transcripts = ["what time is it"]
    deepgram.segment_words = 2
    interims: list[str] = []
    state: dict[str, Any] = {}
    # The Finalize answer carries only "is it": the rest came earlier as an is_final segment.
    assert await utterance(stt, state, speech(), interims) == "what time is it"
    assert interims[-1] == "what time is it"
    await stt.release(state)
