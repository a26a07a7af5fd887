"""Barge-in inside the pipeline: the old turn's work is cancelled and none of its audio survives; a
sound that is not an interruption pauses the reply, which then plays on whole."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from tests.support import waits
from voice_agent.pipeline.barge_in import QUIET_MS
from voice_agent.pipeline.pipeline import Pipeline
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import EndpointCallback, InterimCallback, Providers, Served

TONE = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()  # 20 ms at 16 kHz


class NoSTT:
    name = "none"
    sample_rate = 16000

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(self, on_interim: InterimCallback, state: dict[str, Any]) -> Any:
        raise AssertionError("typed turns only in this test")

    async def release(self, state: dict[str, Any]) -> None: ...


class SpokenSTT:
    """Each utterance's hypotheses, as (frames heard so far, text), and its final transcript."""

    name = "spoken"
    sample_rate = 16000

    def __init__(self, *utterances: tuple[list[tuple[int, str]], str]) -> None:
        self.utterances = list(utterances)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> Any:
        return SpokenStream(on_interim, *self.utterances.pop(0))

    async def release(self, state: dict[str, Any]) -> None: ...


class SpokenStream:
    provider = "spoken"

    def __init__(self, on_interim: InterimCallback, hypotheses: list[tuple[int, str]], final: str) -> None:
        self.on_interim = on_interim
        self.hypotheses = dict(hypotheses)
        self.final = final
        self.frames = 0

    async def send(self, pcm: bytes) -> None:
        self.frames += 1
        if self.frames in self.hypotheses:
            self.on_interim(self.hypotheses[self.frames])

    async def finish(self) -> str:
        return self.final

    async def aclose(self) -> None: ...


class ScriptedLLM:
    """First reply: two sentences, then (`hang`) waits like a slow upstream; later replies complete."""

    name = "scripted"

    def __init__(self, hang: bool = True) -> None:
        self.hang = hang
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
                if self.hang:
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


VOICED = b"\x01" * 640  # 20 ms at 16 kHz; the VAD below calls a frame speech by its first byte
SILENT = b"\x00" * 640


async def spoken_pipeline(
    stt: SpokenSTT, llm: ScriptedLLM, events: list[dict[str, Any]]
) -> tuple[Pipeline, list[bool]]:
    """A call with a reply to "tell me something" under way, 5 frames of it heard."""
    pipe = Pipeline("s2", Providers(stt, llm, ToneTTS()), events.append)  # type: ignore[arg-type]
    pipe.vad.is_speech = lambda pcm: pcm[0] == 1  # type: ignore[method-assign]
    await pipe.start()
    pipe.media_started()
    await pipe.push_text("tell me something")
    heard: list[bool] = []
    while sum(heard) < 5:
        heard.append(loud(await pipe.track.recv_pcm()))
        assert len(heard) < 200, "the reply never started"
    return pipe, heard


async def test_a_backchannel_pauses_the_reply_which_then_plays_on_whole() -> None:
    events: list[dict[str, Any]] = []
    llm = ScriptedLLM(hang=False)
    stt = SpokenSTT(([(6, "yeah")], "yeah"))
    pipe, heard = await spoken_pipeline(stt, llm, events)
    try:
        for pcm in [VOICED] * 10:
            await pipe.push_audio(pcm)
        for _ in range(5):
            assert not loud(await pipe.track.recv_pcm()), "the reply plays on over the user's sound"
        for pcm in [SILENT] * (QUIET_MS // 20 + 10):  # quiet, and then the end of the utterance
            await pipe.push_audio(pcm)
        await eventually(lambda: any(e["type"] == "transcript" and e["final"] for e in events))
        while pipe.status != "listening":
            heard.append(loud(await pipe.track.recv_pcm()))
            assert len(heard) < 200, "the reply never finished"
        assert sum(heard) == 20, "both sentences played, every frame once"
        assert [(m.role, m.content, m.interrupted) for m in pipe.conversation.messages] == [
            ("user", "tell me something", False),
            ("assistant", "One two three four. Five six seven eight.", False),
        ], "the reply is remembered whole, and the backchannel not at all"
        assert llm.calls == 1
        finals = [e["text"] for e in events if e["type"] == "transcript" and e["final"]]
        assert finals == [""], "the client never sees the backchannel as a turn"
    finally:
        await pipe.stop()


async def test_words_over_the_reply_cut_it_where_it_was_heard_and_are_answered() -> None:
    events: list[dict[str, Any]] = []
    llm = ScriptedLLM()
    stt = SpokenSTT(([(8, "wait"), (18, "wait stop")], "wait stop"))
    pipe, _ = await spoken_pipeline(stt, llm, events)
    try:
        for pcm in [VOICED] * 20:
            await pipe.push_audio(pcm)
        await eventually(lambda: 1 in llm.closed)
        assert pipe.track.buffered_bytes == 0
        last = pipe.conversation.messages[-1]
        assert (last.role, last.content, last.interrupted) == ("assistant", "One two...", True)
        assert {"type": "ai_interrupted", "text": "One two..."} in events, "the client is told what was heard"
        for pcm in [SILENT] * 25:
            await pipe.push_audio(pcm)
        await eventually(lambda: llm.calls == 2)
        assert [(m.role, m.content) for m in llm.seen[1][-2:]] == [
            ("assistant", "One two..."),
            ("user", "wait stop"),
        ]
    finally:
        await pipe.stop()
