"""TTS stage: synthesizes each sentence as soon as it is complete, so speech starts on the first
sentence while the LLM is still writing the rest. Audio is resampled once to the output rate."""

from __future__ import annotations

import contextlib
import time

from voice_agent.media.audio import OUTPUT_RATE, PcmResampler
from voice_agent.pipeline.frames import (
    DataFrame,
    InterruptionFrame,
    ProviderErrorFrame,
    SentenceFrame,
    TTSAudioFrame,
)
from voice_agent.pipeline.processor import QueuedProcessor
from voice_agent.providers.base import ProviderError, Served, TTSProvider


class TTSProcessor(QueuedProcessor):
    name = "tts"

    def __init__(self, provider: TTSProvider) -> None:
        super().__init__()
        self._provider = provider
        self._resampler = PcmResampler(provider.sample_rate, OUTPUT_RATE)
        self._first_audio_turn = -1

    async def on_interrupted(self, frame: InterruptionFrame) -> None:
        # Filter state belongs to the cancelled audio; a fresh resampler starts the next turn clean.
        self._resampler = PcmResampler(self._provider.sample_rate, OUTPUT_RATE)

    async def process(self, frame: DataFrame) -> None:
        if not isinstance(frame, SentenceFrame):
            await self.forward(frame)
            return
        t0 = time.monotonic()
        served = Served(self._provider.name)
        try:
            async with contextlib.aclosing(self._provider.synthesize(frame.text, served)) as chunks:
                async for chunk in chunks:
                    # Who synthesizes is told until the turn's first audio (a fallback may answer).
                    provider = served.provider if self._first_audio_turn != frame.turn else None
                    await self._emit(frame, self._resampler.resample(chunk), t0, False, provider)
        except ProviderError as exc:
            self.report(ProviderErrorFrame(exc, frame.turn))
        await self._emit(frame, self._resampler.flush(), t0, True, None)
        self._resampler = PcmResampler(self._provider.sample_rate, OUTPUT_RATE)

    async def _emit(
        self, frame: SentenceFrame, pcm: bytes, t0: float, last: bool, provider: str | None
    ) -> None:
        first_ms = None
        if pcm and self._first_audio_turn != frame.turn:
            self._first_audio_turn = frame.turn
            first_ms = (time.monotonic() - t0) * 1000
        await self.push(TTSAudioFrame(pcm, frame.turn, frame.index, frame.text, last, first_ms, provider))
