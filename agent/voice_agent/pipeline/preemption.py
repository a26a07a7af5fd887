"""Preemptive generation: start the reply while the user is still (probably) done talking.

The end-of-turn silence is the one wait nobody can skip, but the agent does not have to idle
through it. Once the user has paused for `preemptive_after_ms`, the reply to what they have said
so far is drafted: LLM tokens and the audio of its first sentence. If the turn then ends with the
same words and the same history, the LLM and TTS stages receive the draft instead of asking the
providers again, so speech starts as soon as the turn is confirmed. If the user speaks on, or the
final transcript differs, the draft is dropped and its provider streams are closed.

The stages do not know: the draft lives in provider wrappers with the providers' own interface.
PreemptionObserver decides when to draft, keep or drop, from the frames it observes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Generic, TypeVar

from voice_agent.pipeline.context import Conversation, SentenceSplitter
from voice_agent.pipeline.frames import (
    Frame,
    TranscriptionFrame,
    TurnStartedFrame,
    UserPausedFrame,
    UserResumedFrame,
    UserStartedSpeakingFrame,
)
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import LLMProvider, Served, TTSProvider
from voice_agent.telemetry import metrics

T = TypeVar("T")
K = TypeVar("K")


class Draft(Generic[K, T]):
    """Items of one provider stream, produced ahead of time, replayable once."""

    def __init__(self, key: K, source: AsyncGenerator[T, None], served: Served) -> None:
        self.key = key
        self.served = served
        self.items: list[T] = []
        self.done = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(source), name="draft")

    async def _run(self, source: AsyncGenerator[T, None]) -> None:
        try:
            async with contextlib.aclosing(source) as items:
                async for item in items:
                    self.items.append(item)
                    self._notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # replayed to the consumer, which handles provider errors
            self.error = exc
        finally:
            self.done = True
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_more(self) -> None:
        """Until the next item arrives or the stream ends."""
        await self._changed.wait()

    async def replay(self, served: Served | None) -> AsyncGenerator[T, None]:
        i = 0
        try:
            while True:
                if served is not None:
                    served.provider = self.served.provider
                while i < len(self.items):
                    yield self.items[i]
                    i += 1
                if self.done:
                    if self.error is not None:
                        raise self.error
                    return
                await self.wait_for_more()
        finally:
            if not self.done:  # the consumer stopped early (barge-in): stop the provider too
                self.task.cancel()

    def cancel(self) -> None:
        self.task.cancel()


class PreemptiveLLM:
    """An LLMProvider that serves a prepared draft when the messages match exactly."""

    def __init__(self, inner: LLMProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self._draft: Draft[list[Message], str] | None = None

    def prepare(self, messages: Sequence[Message]) -> Draft[list[Message], str]:
        self.discard()
        served = Served(self.inner.name)
        self._draft = Draft(list(messages), self.inner.stream(messages, served), served)
        return self._draft

    def discard(self) -> None:
        if self._draft is not None:
            self._draft.cancel()
            self._draft = None

    def stream(self, messages: Sequence[Message], served: Served | None = None) -> AsyncGenerator[str, None]:
        draft, self._draft = self._draft, None
        if draft is not None and draft.key == list(messages):
            return draft.replay(served)
        if draft is not None:
            draft.cancel()
        return self.inner.stream(messages, served)

    async def close(self) -> None:
        self.discard()


class PreemptiveTTS:
    """A TTSProvider that serves the prepared audio of a sentence when the text matches."""

    def __init__(self, inner: TTSProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self._draft: Draft[str, bytes] | None = None

    def prepare(self, text: str) -> None:
        self.discard()
        served = Served(self.inner.name)
        self._draft = Draft(text, self.inner.synthesize(text, served), served)

    def discard(self) -> None:
        if self._draft is not None:
            self._draft.cancel()
            self._draft = None

    def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        draft, self._draft = self._draft, None
        if draft is not None and draft.key == text:
            return draft.replay(served)
        if draft is not None:
            draft.cancel()
        return self.inner.synthesize(text, served)

    async def close(self) -> None:
        self.discard()


class Preemption:
    """Drafts the reply to `text` in the background; `discard` drops it and its streams."""

    def __init__(self, llm: PreemptiveLLM, tts: PreemptiveTTS) -> None:
        self.llm = llm
        self.tts = tts
        self.text: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, history: Sequence[Message], text: str) -> None:
        self.discard()
        self.text = text
        draft = self.llm.prepare([*history, Message(role="user", content=text)])
        self._task = asyncio.create_task(self._first_sentence(draft), name="draft-tts")

    async def _first_sentence(self, draft: Draft[list[Message], str]) -> None:
        """Synthesize the first chunk exactly as the LLM stage will cut it (same splitter)."""
        splitter = SentenceSplitter()
        seen = 0
        while True:
            for token in draft.items[seen:]:
                seen += 1
                sentences = splitter.feed(token)
                if sentences:
                    self.tts.prepare(sentences[0])
                    return
            if draft.done:
                rest = splitter.flush()
                if rest and draft.error is None:
                    self.tts.prepare(rest[0])
                return
            await draft.wait_for_more()

    def commit(self) -> None:
        """The turn ended with the drafted words: the stages will take the drafts from here.

        A first sentence not yet handed to TTS is left to the TTS stage, so it is never asked for
        twice."""
        self.text = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def discard(self) -> None:
        self.text = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.llm.discard()
        self.tts.discard()


class PreemptionObserver:
    """Drafts on a pause (the latest interim words, while no turn is in flight), drops the draft when
    the user speaks on, and at the turn's start keeps it only for the very same words.

    A pause shorter than the end-of-turn decision's (the defaults, docs/configuration.md) lets the
    draft's provider work run while the decision is still waiting. Words that change during the
    pause (the recognizer's answer to the decision's query, a later interim) are drafted again, so
    the draft follows what the final transcript will most likely say rather than stale words."""

    frame_types = (
        TranscriptionFrame,
        UserPausedFrame,
        UserResumedFrame,
        UserStartedSpeakingFrame,
        TurnStartedFrame,
    )

    def __init__(self, preemption: Preemption, turns: TurnTracker, conversation: Conversation) -> None:
        self._preemption = preemption
        self._turns = turns
        self._conversation = conversation
        self._last_interim = ""

    def on_frame(self, frame: Frame) -> None:
        match frame:
            case TranscriptionFrame(final=False, text=text):
                self._last_interim = text
                drafted = self._preemption.text
                if drafted is not None and text and text != drafted and self._turns.active_turn is None:
                    self._preemption.start(self._conversation.messages, text)
            case UserPausedFrame():
                if self._turns.active_turn is None and self._last_interim:
                    self._preemption.start(self._conversation.messages, self._last_interim)
            case UserResumedFrame() | UserStartedSpeakingFrame():
                # More speech: whatever was drafted answers words the user has not finished.
                if self._preemption.text is not None:
                    metrics.PREEMPTIONS.labels("dropped").inc()
                self._preemption.discard()
            case TurnStartedFrame(user=user):
                if self._preemption.text is not None:
                    if user.text == self._preemption.text:
                        metrics.PREEMPTIONS.labels("used").inc()
                        self._preemption.commit()
                    else:
                        metrics.PREEMPTIONS.labels("missed").inc()
                        self._preemption.discard()
                self._last_interim = ""
