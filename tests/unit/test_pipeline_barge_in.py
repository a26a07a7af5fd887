"""Barge-in inside the pipeline: the old turn's work is cancelled and none of its audio survives."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from tests.support import waits
from voice_agent.pipeline.pipeline import Pipeline
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import InterimCallback, Providers, Served

TONE = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()  # 20 ms at 16 kHz


class NoSTT:
    name = "none"
    sample_rate = 16000

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(self, on_interim: InterimCallback, state: dict[str, Any]) -> Any:
        raise AssertionError("typed turns only in this test")

    async def release(self, state: dict[str, Any]) -> None: ...


class ScriptedLLM:
    """First reply: two sentences, then hangs like a slow upstream; later replies complete."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0
        self.closed: list[int] = []
        self.seen: list[list[Message]] = []

    async def stream(
        self, messages: Sequence[Message], served: Served | None = None
    ) -> AsyncGenerator[str, None]:
        self.calls += 1
        call = self.calls
        self.seen.append(list(messages))
        try:
            if call == 1:
                for token in ["One two three four. ", "Five six seven eight. "]:
                    yield token
                await asyncio.Event().wait()
            else:
                yield "Done now."
        finally:
            self.closed.append(call)

    async def close(self) -> None: ...


class ToneTTS:
    name = "tone"
    sample_rate = 16000

    async def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        for _ in range(10):  # 200 ms per sentence
            yield TONE
            await asyncio.sleep(0)

    async def close(self) -> None: ...


eventually = functools.partial(waits.until, timeout=5.0, interval=0.01)


def loud(frame: Any) -> bool:
    return bool(np.abs(np.frombuffer(frame, dtype="<i2")).max() > 100)


async def test_interruption_cancels_the_turn_and_no_old_audio_plays() -> None:
    events: list[dict[str, Any]] = []
    llm = ScriptedLLM()
    pipe = Pipeline("s1", Providers(NoSTT(), llm, ToneTTS()), events.append)  # type: ignore[arg-type]
    await pipe.start()
    pipe.media_started()
    try:
        await pipe.push_text("tell me something")
        track = pipe.track
        played = 0
        for _ in range(200):
            if loud(await track.recv_pcm()):
                played += 1
                if played == 12:  # all of sentence one (10 frames) and part of sentence two
                    break
        assert played == 12

        await pipe.interrupt()
        await eventually(lambda: 1 in llm.closed)
        assert track.buffered_bytes == 0
        assert not track.enqueue(1, 1, TONE * 3), "late audio of the interrupted turn is refused"
        for _ in range(10):
            assert not loud(await track.recv_pcm()), "old turn's audio played after the interruption"

        last = pipe.conversation.messages[-1]
        assert last.role == "assistant" and last.interrupted
        assert last.content.startswith("One two three four.")
        assert "eight" not in last.content, "unheard words must not enter the history"
        assert [e["processing"] for e in events if e["type"] == "status"][-1] == "listening"

        await pipe.push_text("again")
        for _ in range(200):
            if loud(await track.recv_pcm()):
                break
        else:
            raise AssertionError("the next turn was never spoken")
        assert llm.seen[1][-2].interrupted, "the LLM is told the previous reply was cut off"
        for _ in range(30):
            await track.recv_pcm()
        await eventually(lambda: any(e["type"] == "metrics" for e in events))
        assert pipe.conversation.messages[-1].content == "Done now."
    finally:
        await pipe.stop()
