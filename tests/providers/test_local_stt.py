"""The offline recognizer: decoders made at start-up, every utterance heard at one speech level, and
what a session learns of its speaker kept for its next utterance."""

from __future__ import annotations

import asyncio
import math
from typing import Any
from unittest.mock import Mock

import numpy as np
import pytest

from bench import voices
from voice_agent.providers import local_stt
from voice_agent.providers.local_stt import (
    CMN_INIT,
    TARGET_DBFS,
    PocketSphinxStream,
    PocketSphinxSTT,
    apply_gain,
    slice_powers,
    speech_level_dbfs,
)

FRAME = 640  # 20 ms at 16 kHz


def tone(db: float, ms: int) -> bytes:
    t = np.arange(16 * ms) / 16000
    return (np.sin(2 * np.pi * 440 * t) * 32767 * 10 ** (db / 20) * math.sqrt(2)).astype("<i2").tobytes()


def phrase(db: float = 0.0) -> bytes:
    speech = np.frombuffer(voices.speak("what time is it", "slt"), "<i2").astype(np.float32)
    quieter = (speech * 10 ** (db / 20)).astype("<i2").tobytes()
    return voices.concat(voices.silence(300), quieter, voices.silence(200))


async def feed(stream: PocketSphinxStream, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        await stream.send(pcm[i : i + FRAME])
        await asyncio.sleep(0)


async def hear(stt: PocketSphinxSTT, pcm: bytes, state: dict[str, Any]) -> str:
    stream = await stt.open_stream(lambda _text: None, state)
    await feed(stream, pcm)
    return await stream.finish()


def test_speech_level_is_the_active_level() -> None:
    loud = slice_powers(tone(-20, 400))
    assert speech_level_dbfs(loud) == pytest.approx(-20, abs=0.1)
    # Pauses and a quiet lead-in do not pull the level down; silence has none.
    assert speech_level_dbfs(slice_powers(bytes(FRAME * 20)) + loud) == pytest.approx(-20, abs=0.1)
    assert speech_level_dbfs(slice_powers(tone(-50, 400)) + loud) == pytest.approx(-20, abs=0.1)
    assert speech_level_dbfs(slice_powers(bytes(FRAME * 20))) is None
    assert speech_level_dbfs([]) is None
    assert speech_level_dbfs(slice_powers(tone(-80, 400))) is None


def test_gain_clips_instead_of_wrapping() -> None:
    out = np.frombuffer(apply_gain(tone(-6, 20), 10.0), "<i2")
    assert out.max() == 32767 and out.min() == -32768
    assert apply_gain(b"\x01\x00", 1.0) == b"\x01\x00"


async def test_start_creates_every_decoder_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr("pocketsphinx.Decoder", lambda **config: made.append(config) or Mock())
    stt = PocketSphinxSTT(decoders=3)
    await stt.start()
    # Three for the pool, and the backchannel look's (no language model).
    assert [config.get("lm", "default") for config in made] == ["default"] * 3 + [None]
    await stt.start()  # idempotent: the pool never grows past its size
    assert len(made) == 4


async def test_quiet_speech_is_heard_like_loud_speech() -> None:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    loud = await hear(stt, phrase(), {})
    assert loud
    state: dict[str, Any] = {}
    assert await hear(stt, phrase(-24), state) == loud  # the same features once at one level
    assert state["level_dbfs"] == pytest.approx(speech_level_dbfs(slice_powers(phrase(-24))), abs=0.01)


async def test_session_keeps_its_speaker_level_and_adapted_mean() -> None:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    state: dict[str, Any] = {}
    await hear(stt, phrase(-12), state)
    assert state["cmn"] != CMN_INIT  # the mean end_utt settled on, not the one set at the start
    assert state["level_dbfs"] < TARGET_DBFS + 10
    learned = dict(state)
    # A sound with no words (a cough) teaches nothing about the speaker's level.
    assert await hear(stt, voices.concat(voices.silence(200), voices.cough(300)), state) == ""
    assert state["level_dbfs"] == learned["level_dbfs"]


async def test_decoding_waits_for_the_level_only_when_the_session_has_none() -> None:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    stream = await stt.open_stream(lambda _text: None, {})
    await feed(stream, voices.silence(300) + tone(-20, local_stt.SETTLE_MS - 20))
    assert stream._decoder is None  # still measuring the utterance's level from its onset
    await feed(stream, tone(-20, 20))
    assert stream._decoder is not None
    await stream.aclose()

    hushed = await stt.open_stream(lambda _text: None, {})
    await feed(hushed, voices.silence(local_stt.SETTLE_MAX_MS - 20))
    assert hushed._decoder is None
    await feed(hushed, voices.silence(20))
    assert hushed._decoder is not None  # nothing loud came: decoding starts anyway
    await hushed.aclose()

    known = await stt.open_stream(lambda _text: None, {"level_dbfs": -20.0})
    await feed(known, voices.silence(40))
    assert known._decoder is not None
    await known.aclose()


async def test_partial_decodes_what_is_buffered() -> None:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    stream = await stt.open_stream(lambda _text: None, {})
    await feed(stream, phrase()[: 5 * FRAME])
    assert stream.partial() is not None  # asked for: decoding begins on what is there
    await stream.aclose()
    assert stream.partial() is None


async def send_until_decoding(stream: PocketSphinxStream, pcm: bytes) -> tuple[int, int]:
    """Frames one by one until decoding begins (the level measured); the bytes sent, and how many
    times other tasks ran during the send that began it."""
    ticks = 0

    async def other_call() -> None:  # every other call's outbound audio, as far as the loop sees
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_call())
    sent, during = 0, 0
    try:
        while stream._decoder is None and sent < len(pcm):
            before = ticks
            await stream.send(pcm[sent : sent + FRAME])
            during = ticks - before
            sent += FRAME
            await asyncio.sleep(0)  # as between frames of a call: the stream's decoder arrives
    finally:
        ticker.cancel()
    assert stream._decoder is not None
    return sent, during


async def test_audio_that_waited_is_decoded_without_holding_the_event_loop() -> None:
    """The first utterance's start waits for its level, then is decoded at once: a frame at a time,
    with other tasks running in between, and heard the same."""
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    pcm = phrase()
    reference = await hear(stt, pcm, {})
    stream = await stt.open_stream(lambda _text: None, {})
    sent, during = await send_until_decoding(stream, pcm)
    assert sent >= 10 * FRAME  # this much waited for the level: all of it decoded in the last send
    assert during >= sent // FRAME - 1  # and other tasks ran between its frames
    await feed(stream, pcm[sent:])
    assert await stream.finish() == reference


async def test_finish_while_waited_audio_is_decoded_hears_all_of_it() -> None:
    stt = PocketSphinxSTT(decoders=1)
    await stt.start()
    pcm = phrase()
    reference = await hear(stt, pcm, {})
    stream = await stt.open_stream(lambda _text: None, {})
    sent, _ = await send_until_decoding(stream, pcm)
    catching_up = asyncio.create_task(stream.send(pcm[sent:]))  # the rest in one burst
    await asyncio.sleep(0)
    assert not catching_up.done()
    assert await stream.finish() == reference  # takes what was still pending, in order
    await catching_up  # and the send stops without touching the released decoder
    assert stream.partial() is None
