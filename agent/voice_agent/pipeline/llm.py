"""LLM stage: one user turn in, reply tokens streamed out as sentences for TTS.

The provider's stream is closed (not just abandoned) when the turn is interrupted, so a cloud
request stops at once instead of running to completion in the background.
"""

from __future__ import annotations

import contextlib

from voice_agent.pipeline.context import SentenceSplitter
from voice_agent.pipeline.frames import DataFrame, LLMDoneFrame, SentenceFrame, UserTurnFrame
from voice_agent.pipeline.observer import TurnObserver
from voice_agent.pipeline.processor import QueuedProcessor
from voice_agent.providers.base import LLMProvider, ProviderError, Served


class LLMProcessor(QueuedProcessor):
    name = "llm"

    def __init__(self, provider: LLMProvider, observer: TurnObserver) -> None:
        super().__init__()
        self._provider = provider
        self._observer = observer

    async def process(self, frame: DataFrame) -> None:
        if not isinstance(frame, UserTurnFrame):
            await self.push(frame)
            return
        self._observer.turn_started(frame)
        splitter = SentenceSplitter()
        text = ""
        index = 0
        served = Served(self._provider.name)
        try:
            async with contextlib.aclosing(self._provider.stream(self._observer.history(), served)) as tokens:
                async for token in tokens:
                    first = not text
                    if first:
                        self._observer.served(frame.turn, "llm", served.provider)
                    text += token
                    self._observer.llm_text(frame.turn, text, first)
                    for sentence in splitter.feed(token):
                        await self._sentence(frame.turn, index, sentence)
                        index += 1
        except ProviderError as exc:
            self._observer.provider_error(exc, frame.turn)
        for sentence in splitter.flush():
            await self._sentence(frame.turn, index, sentence)
            index += 1
        self._observer.llm_done(frame.turn, text.strip())
        await self.push(LLMDoneFrame(frame.turn, text.strip()))

    async def _sentence(self, turn: int, index: int, text: str) -> None:
        self._observer.sentence(turn, index, text)
        await self.push(SentenceFrame(text, turn, index))
