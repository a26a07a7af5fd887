"""LLM stage: one user turn in, reply tokens streamed out as sentences for TTS.

Taking up a turn is reported first (TurnStartedFrame): the observers record the user's words, so
the history read next already holds them. The provider's stream is closed (not just abandoned)
when the turn is interrupted, so a cloud request stops at once instead of running to completion
in the background.
"""

from __future__ import annotations

import contextlib

from voice_agent.pipeline.context import Conversation, SentenceSplitter
from voice_agent.pipeline.frames import (
    DataFrame,
    LLMDoneFrame,
    LLMTextFrame,
    ProviderErrorFrame,
    SentenceFrame,
    TurnStartedFrame,
    UserTurnFrame,
)
from voice_agent.pipeline.processor import QueuedProcessor
from voice_agent.providers.base import LLMProvider, ProviderError, Served


class LLMProcessor(QueuedProcessor):
    name = "llm"

    def __init__(self, provider: LLMProvider, conversation: Conversation) -> None:
        super().__init__()
        self._provider = provider
        self._conversation = conversation

    async def process(self, frame: DataFrame) -> None:
        if not isinstance(frame, UserTurnFrame):
            await self.forward(frame)
            return
        self.report(TurnStartedFrame(frame))
        splitter = SentenceSplitter()
        text = ""
        index = 0
        served = Served(self._provider.name)
        provider: str | None = None  # who answered the first token
        history = list(self._conversation.messages)
        try:
            async with contextlib.aclosing(self._provider.stream(history, served)) as tokens:
                async for token in tokens:
                    first = not text
                    if first:
                        provider = served.provider
                    text += token
                    self.report(LLMTextFrame(frame.turn, text, first, provider))
                    for sentence in splitter.feed(token):
                        await self.push(SentenceFrame(sentence, frame.turn, index))
                        index += 1
        except ProviderError as exc:
            self.report(ProviderErrorFrame(exc, frame.turn))
        for sentence in splitter.flush():
            await self.push(SentenceFrame(sentence, frame.turn, index))
            index += 1
        self.report(LLMDoneFrame(frame.turn, text.strip(), provider))
