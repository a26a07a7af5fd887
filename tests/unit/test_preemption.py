"""Preemptive generation: a draft made during the end-of-turn silence is used only if it still fits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from voice_agent.pipeline.context import Conversation
from voice_agent.pipeline.frames import TranscriptionFrame, UserPausedFrame, UserResumedFrame
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.preemption import Preemption, PreemptionObserver, PreemptiveLLM, PreemptiveTTS
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Served


class CountingLLM:
    name = "counting"

    def __init__(self, hang: bool = False) -> None:
        self.calls: list[list[Message]] = []
        self.closed = 0
        self.hang = hang

    async def stream(
        self, messages: Sequence[Message], served: Served | None = None
    ) -> AsyncGenerator[str, None]:
        self.calls.append(list(messages))
        try:
            yield f"You said {messages[-1].content}. "
            if self.hang:
                await asyncio.Event().wait()
            yield "Anything else?"
        finally:
            self.closed += 1

    async def close(self) -> None: ...


class CountingTTS:
    name = "counting"
    sample_rate = 16000

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        self.texts.append(text)
        yield b"\x01\x00" * 160

    async def close(self) -> None: ...


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def collect(gen: AsyncGenerator[str, None]) -> str:
    return "".join([t async for t in gen])


def make(hang: bool = False) -> tuple[CountingLLM, CountingTTS, Preemption]:
    llm, tts = CountingLLM(hang), CountingTTS()
    return llm, tts, Preemption(PreemptiveLLM(llm), PreemptiveTTS(tts))  # type: ignore[arg-type]


async def test_matching_turn_uses_the_draft_and_asks_each_provider_once() -> None:
    llm, tts, pre = make()
    history = [Message(role="system", content="be brief")]
    pre.start(history, "hello")
    await settle()
    assert tts.texts == ["You said hello."], "first sentence synthesized ahead of time"
    pre.commit()
    messages = [*history, Message(role="user", content="hello")]
    served = Served("counting")
    assert await collect(pre.llm.stream(messages, served)) == "You said hello. Anything else?"
    audio = [c async for c in pre.tts.synthesize("You said hello.")]
    assert audio and len(llm.calls) == 1 and tts.texts == ["You said hello."]
    assert served.provider == "counting"


async def test_different_words_or_history_go_to_the_provider_again() -> None:
    llm, _, pre = make()
    pre.start([], "hello")
    await settle()
    pre.discard()  # what the pipeline does when the final transcript differs
    await collect(pre.llm.stream([Message(role="user", content="hello there")]))
    assert [m[-1].content for m in llm.calls] == ["hello", "hello there"]

    pre.start([], "hi")
    await settle()
    other_history = [Message(role="user", content="earlier"), Message(role="user", content="hi")]
    await collect(pre.llm.stream(other_history))
    assert len(llm.calls) == 4, "a draft for other messages is never served"


async def test_speaking_on_closes_the_drafted_stream() -> None:
    llm, _, pre = make(hang=True)
    pre.start([], "wait")
    await settle()
    assert llm.closed == 0
    pre.discard()
    await settle()
    assert llm.closed == 1, "the provider stream of a dropped draft is closed, not left running"


async def test_barge_in_while_replaying_stops_the_provider() -> None:
    llm, _, pre = make(hang=True)
    pre.start([], "go")
    await settle()
    pre.commit()
    stream = pre.llm.stream([Message(role="user", content="go")])
    assert await anext(stream) == "You said go. "
    await stream.aclose()
    await settle()
    assert llm.closed == 1


async def test_words_that_change_during_the_pause_are_drafted_again() -> None:
    llm, tts, pre = make()
    observer = PreemptionObserver(pre, TurnTracker(FrameBus()), Conversation())
    observer.on_frame(TranscriptionFrame(text="what time", final=False))
    observer.on_frame(UserPausedFrame(at=0.0))
    await settle()
    # The recognizer's answer at the end-of-turn decision, still within the pause.
    observer.on_frame(TranscriptionFrame(text="what time is it", final=False))
    await settle()
    assert pre.text == "what time is it"
    assert [m[-1].content for m in llm.calls] == ["what time", "what time is it"]
    assert tts.texts[-1] == "You said what time is it."

    observer.on_frame(UserResumedFrame())
    observer.on_frame(TranscriptionFrame(text="what time is it in", final=False))
    await settle()
    assert pre.text is None and len(llm.calls) == 2, "no pause, no draft: words while speaking wait"
