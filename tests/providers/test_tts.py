"""ElevenLabs streaming synthesis through the official SDK against the fake /stream endpoint."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from tests.providers.conftest import ELEVENLABS_KEY, KEYS, cloud_settings, until
from tests.providers.fakes.base import Fault
from tests.providers.fakes.elevenlabs import FakeElevenLabs, speech
from tests.support.speech import overlap, transcribe
from voice_agent.providers.base import ProviderError, Providers, TTSProvider
from voice_agent.providers.elevenlabs_tts import EvenBytes
from voice_agent.settings import Settings

Build = Callable[[Settings], Providers]
TEXT = "The weather is sunny today."


async def audio(tts: TTSProvider, text: str = TEXT) -> tuple[bytes, list[int]]:
    chunks = [chunk async for chunk in tts.synthesize(text)]
    return b"".join(chunks), [len(c) for c in chunks]


async def failure(tts: TTSProvider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await audio(tts)
    for key in KEYS:
        assert key not in info.value.message
    return info.value


async def test_streams_pcm_at_the_requested_rate(elevenlabs: FakeElevenLabs, built: Build) -> None:
    settings = cloud_settings(
        elevenlabs=elevenlabs, elevenlabs_voice_id="voice123", elevenlabs_model="eleven_turbo_v2_5"
    )
    tts = built(settings).tts
    assert tts.sample_rate == 24000
    pcm, sizes = await audio(tts)
    rec = elevenlabs.records[-1]
    assert rec.path == "/v1/text-to-speech/voice123/stream"
    assert rec.query["output_format"] == "pcm_24000"
    assert rec.headers["xi-api-key"] == ELEVENLABS_KEY
    assert rec.body["text"] == TEXT and rec.body["model_id"] == "eleven_turbo_v2_5"
    assert pcm == speech(TEXT, 24000) and len(sizes) > 1
    assert overlap("weather is sunny today", transcribe(pcm, 24000)) >= 0.5


async def test_odd_chunk_boundaries_never_split_a_sample(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs, elevenlabs_output_format="pcm_16000")).tts
    elevenlabs.odd_chunks = True
    pcm, sizes = await audio(tts)
    assert all(size % 2 == 0 for size in sizes)
    assert pcm == speech(TEXT, 16000)[: len(pcm)] and len(speech(TEXT, 16000)) - len(pcm) <= 1


def test_even_bytes_carries_the_odd_byte() -> None:
    even = EvenBytes()
    assert [even.feed(b"abc"), even.feed(b"d"), even.feed(b"e"), even.feed(b"fgh")] == [
        b"ab",
        b"cd",
        b"",
        b"efgh",
    ]


async def test_invalid_key(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs, ELEVENLABS_API_KEY="bad")).tts
    err = await failure(tts)
    assert (err.code, err.provider) == ("tts_auth", "elevenlabs")
    assert len(elevenlabs.records) == 1


async def test_429_retry_after_then_audio(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs)).tts
    elevenlabs.fail_next(Fault(status=429, headers={"Retry-After": "0.1"}))
    pcm, _ = await audio(tts)
    assert pcm and [r.status for r in elevenlabs.records] == [429, 200]


async def test_429_gives_up_after_bounded_retries(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs, provider_max_retries=1)).tts
    elevenlabs.fail_next(*[Fault(status=429) for _ in range(3)])
    assert (await failure(tts)).code == "tts_rate_limited"
    assert len(elevenlabs.records) == 2


async def test_200_that_is_not_audio_is_bad_response(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs)).tts
    elevenlabs.fail_next(Fault(mode="malformed"))
    assert (await failure(tts)).code == "tts_bad_response"


async def test_dropped_mid_stream(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs)).tts
    elevenlabs.fail_next(Fault(mode="drop", after=2))
    assert (await failure(tts)).code == "tts_dropped"


async def test_stall_times_out(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs, provider_timeout_s=0.3)).tts
    elevenlabs.fail_next(Fault(mode="stall", after=1))
    started = time.monotonic()
    assert (await failure(tts)).code == "tts_timeout"
    assert time.monotonic() - started < 10


async def test_closing_the_generator_closes_the_http_stream(elevenlabs: FakeElevenLabs, built: Build) -> None:
    tts = built(cloud_settings(elevenlabs=elevenlabs)).tts
    elevenlabs.chunk_delay_s = 0.05
    chunks = tts.synthesize(TEXT)
    async with contextlib.aclosing(chunks):
        assert await anext(chunks)
    await until(lambda: elevenlabs.records[-1].outcome == "client_closed", what="fake saw the close")
    assert len(elevenlabs.records[-1].sent) < 40  # of ~80 chunks: synthesis stopped with the caller
