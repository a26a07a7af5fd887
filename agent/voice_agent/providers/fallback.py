"""Per-stage fallback to the offline provider, so a call keeps going while a cloud provider is down.

A stage falls back only when its provider fails before producing anything (auth, rate limit,
outage, timeout): once words or audio reached the user, switching voices or models mid-sentence
would be worse than the error. The offline provider that answered is recorded in `Served`, and
the pipeline tells the client which provider answered.

A provider that keeps failing is skipped for a while (a small circuit breaker): without it every
turn would first sit through the provider's timeout or retries before the fallback answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, TypeVar

from voice_agent.media.audio import PcmResampler
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import (
    EndpointCallback,
    InterimCallback,
    LLMProvider,
    PartialHypothesis,
    ProviderError,
    Served,
    STTProvider,
    STTStream,
    TTSProvider,
)
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

BREAKER_FAILURES = 3
BREAKER_COOLDOWN_S = 30.0


class Breaker:
    """After `threshold` failures in a row the primary is skipped for `cooldown_s`, then tried again."""

    def __init__(
        self,
        threshold: int = BREAKER_FAILURES,
        cooldown_s: float = BREAKER_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    def allow(self) -> bool:
        return self._clock() >= self._open_until

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._failures = 0
            self._open_until = self._clock() + self._cooldown_s


def _fell_back(stage: str, code: str, fallback: str, served: Served | None) -> None:
    metrics.PROVIDER_FALLBACKS.labels(stage, fallback).inc()
    log.warning("offline fallback answers", extra={"stage": stage, "code": code})
    if served is not None:
        served.provider = fallback


async def first_or_fallback(
    stage: str,
    breaker: Breaker,
    open_primary: Callable[[], AsyncGenerator[T, None]],
    fallback_name: str,
    open_fallback: Callable[[], AsyncGenerator[T, None]],
    served: Served | None,
) -> AsyncGenerator[T, None]:
    code = "provider_skipped"  # the breaker is open: the primary is not even asked
    if breaker.allow():
        async with contextlib.aclosing(open_primary()) as primary:
            try:
                first = await anext(primary)
            except StopAsyncIteration:
                breaker.succeeded()
                return
            except ProviderError as exc:
                breaker.failed()
                code = exc.code
            else:
                breaker.succeeded()
                yield first
                async for item in primary:
                    yield item
                return
    _fell_back(stage, code, fallback_name, served)
    async with contextlib.aclosing(open_fallback()) as alternative:
        async for item in alternative:
            yield item


class FallbackLLM:
    def __init__(self, primary: LLMProvider, fallback: LLMProvider, breaker: Breaker | None = None) -> None:
        self.name = primary.name
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or Breaker()

    def stream(self, messages: Sequence[Message], served: Served | None = None) -> AsyncGenerator[str, None]:
        return first_or_fallback(
            "llm",
            self.breaker,
            lambda: self.primary.stream(messages, served),
            self.fallback.name,
            lambda: self.fallback.stream(messages),
            served,
        )

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()


class FallbackTTS:
    """Fallback audio is resampled to the primary's rate: the stage was built for that rate."""

    def __init__(self, primary: TTSProvider, fallback: TTSProvider, breaker: Breaker | None = None) -> None:
        self.name = primary.name
        self.sample_rate = primary.sample_rate
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or Breaker()

    async def _fallback_audio(self, text: str) -> AsyncGenerator[bytes, None]:
        resampler = PcmResampler(self.fallback.sample_rate, self.sample_rate)
        async with contextlib.aclosing(self.fallback.synthesize(text)) as chunks:
            async for chunk in chunks:
                out = resampler.resample(chunk)
                if out:
                    yield out
        tail = resampler.flush()
        if tail:
            yield tail

    def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        return first_or_fallback(
            "tts",
            self.breaker,
            lambda: self.primary.synthesize(text, served),
            self.fallback.name,
            lambda: self._fallback_audio(text),
            served,
        )

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()


class FallbackSTTStream:
    """Keeps the utterance's audio, so the fallback can hear all of it when the primary fails."""

    def __init__(
        self, owner: FallbackSTT, primary: STTStream, on_interim: InterimCallback, state: dict[str, Any]
    ) -> None:
        self._owner = owner
        self._stream = primary
        self._audio = bytearray()
        self._on_interim = on_interim
        self._state = state
        self._switched = False

    @property
    def provider(self) -> str:
        return self._stream.provider

    async def _switch(self, exc: ProviderError) -> None:
        if self._switched:
            raise exc
        self._switched = True
        self._owner.breaker.failed()
        _fell_back("stt", exc.code, self._owner.fallback.name, None)
        with contextlib.suppress(Exception):
            await self._stream.aclose()
        self._stream = await self._owner.fallback.open_stream(self._on_interim, self._state)
        if self._audio:
            await self._stream.send(bytes(self._audio))
        self._audio.clear()

    async def send(self, pcm: bytes) -> None:
        if not self._switched:
            self._audio += pcm
        try:
            await self._stream.send(pcm)
        except ProviderError as exc:
            await self._switch(exc)

    def partial(self) -> str | None:
        return self._stream.partial() if isinstance(self._stream, PartialHypothesis) else None

    async def finish(self) -> str:
        try:
            text = await self._stream.finish()
            if not self._switched:
                self._owner.breaker.succeeded()
            return text
        except ProviderError as exc:
            await self._switch(exc)
            return await self._stream.finish()

    async def aclose(self) -> None:
        await self._stream.aclose()


class FallbackSTT:
    def __init__(self, primary: STTProvider, fallback: STTProvider, breaker: Breaker | None = None) -> None:
        self.name = primary.name
        self.sample_rate = primary.sample_rate
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or Breaker()

    async def start(self) -> None:
        await self.primary.start()
        await self.fallback.start()

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> FallbackSTTStream:
        code = "provider_skipped"
        if self.breaker.allow():
            try:
                stream = await self.primary.open_stream(on_interim, state, on_endpoint)
                return FallbackSTTStream(self, stream, on_interim, state)
            except ProviderError as exc:
                self.breaker.failed()
                code = exc.code
        _fell_back("stt", code, self.fallback.name, None)
        result = FallbackSTTStream(
            self, await self.fallback.open_stream(on_interim, state), on_interim, state
        )
        result._switched = True
        return result

    async def release(self, state: dict[str, Any]) -> None:
        await self.primary.release(state)
        await self.fallback.release(state)

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()
