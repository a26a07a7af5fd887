"""Offline TTS: the in-process libflite path and the flite binary speak the same sentence."""

from __future__ import annotations

import pytest

from tests.support.speech import overlap, transcribe
from voice_agent.providers.local_tts import FliteTTS


async def speak(tts: FliteTTS, text: str) -> bytes:
    return b"".join([chunk async for chunk in tts.synthesize(text)])


@pytest.mark.parametrize("in_process", [True, False], ids=["libflite", "binary"])
async def test_flite_speaks_the_sentence_without_padding(in_process: bool) -> None:
    tts = FliteTTS(in_process=in_process)
    try:
        if in_process:
            assert tts._lib is not None, "libflite should be installed with the flite package"
        pcm = await speak(tts, "It is twelve forty five.")
        assert 0.8 < len(pcm) / 2 / tts.sample_rate < 3.0
        assert overlap("it is twelve forty five", transcribe(pcm, tts.sample_rate)) >= 0.6
        assert await speak(tts, "   ") == b""
    finally:
        await tts.close()
