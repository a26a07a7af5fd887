"""What a whole turn tells the client, in order: the contract the pipeline's stages and observers keep."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support import waits
from voice_agent.pipeline.pipeline import Pipeline, PipelineConfig
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import (
    EndpointCallback,
    InterimCallback,
    ProviderError,
    Providers,
    Served,
)

VOICED = b"\x01" * 640  # 20 ms at 16 kHz; the test's VAD calls a frame speech by its first byte
SILENT = b"\x00" * 640
TONE = b"\x10\x27" * 320
SAID = "hello there"
REPLY = ["Sure, ", "here it is. ", "Bye."]

eventually = functools.partial(waits.until, timeout=5.0, interval=0.01)


class ScriptedStream:
    provider = "scripted-stt"

    def __init__(self, on_interim: InterimCallback, on_endpoint: EndpointCallback | None) -> None:
        self.on_interim = on_interim
        self.on_endpoint = on_endpoint
        self.sent = 0

    async def send(self, pcm: bytes) -> None:
        self.sent += 1
        if self.sent == 3:
            self.on_interim(SAID)

    async def finish(self) -> str:
        return SAID

    async def aclose(self) -> None: ...


class ScriptedSTT:
    name = "scripted-stt"
    sample_rate = 16000

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> ScriptedStream:
        self.streams.append(ScriptedStream(on_interim, on_endpoint))
        return self.streams[-1]

    async def release(self, state: dict[str, Any]) -> None: ...


class ScriptedLLM:
    name = "scripted"

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    async def stream(
        self, messages: Sequence[Message], served: Served | None = None
    ) -> AsyncGenerator[str, None]:
        self.calls += 1
        if self.fail:
            raise ProviderError("scripted", "llm_failed", "upstream said no")
        for token in REPLY:
            yield token

    async def close(self) -> None: ...


class ToneTTS:
    name = "tone"
    sample_rate = 16000

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        self.texts.append(text)
        for _ in range(3):
            yield TONE
            await asyncio.sleep(0)

    async def close(self) -> None: ...


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def shape(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event without its timings: what the client relies on."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e["type"] == "metrics":
            turn = e["turn"]
            timings = tuple(k for k in sorted(turn) if k.endswith("_ms") and turn[k] is not None)
            out.append(("metrics", timings, turn.get("providers")))
        elif e["type"] == "status":
            out.append(("status", e["processing"]))
        elif e["type"] == "ai_response":
            out.append(("ai_response", e["text"], e["final"], e.get("provider")))
        elif e["type"] == "transcript":
            out.append(("transcript", e["text"], e["final"]))
        else:
            out.append((e["type"], e.get("code")))
    return out


def reply_events(provider: str | None = "scripted") -> list[tuple[Any, ...]]:
    text = ""
    out: list[tuple[Any, ...]] = []
    for token in REPLY:
        text += token
        out.append(("ai_response", text, False, provider))
    out.append(("ai_response", text.strip(), True, provider))
    return out


async def play_until(pipe: Pipeline, events: list[dict[str, Any]], kind: str) -> None:
    for _ in range(500):
        if any(e["type"] == kind for e in events):
            return
        await pipe.track.recv_pcm()
    raise AssertionError(f"no {kind} event while playing the reply")


async def test_a_spoken_turn_drafted_in_the_pause_and_ended_by_the_stt_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voice_agent.pipeline.turn_metrics")
    events: list[dict[str, Any]] = []
    stt, llm, tts = ScriptedSTT(), ScriptedLLM(), ToneTTS()
    config = PipelineConfig(end_of_turn_silence_ms=2000, preemptive_after_ms=200)
    pipe = Pipeline("s1", Providers(stt, llm, tts), events.append, config)  # type: ignore[arg-type]
    pipe.vad.is_speech = lambda pcm: pcm[0] == 1  # type: ignore[method-assign]
    used = counter("voice_preemptive_drafts_total", outcome="used")
    await pipe.start()
    pipe.media_started()
    try:
        for pcm in [VOICED] * 10 + [SILENT] * 10:  # 200 ms of silence: a pause, not yet the end
            await pipe.push_audio(pcm)
        await eventually(lambda: tts.texts == ["Sure, here it is."])  # drafted during the pause
        stream = stt.streams[0]
        assert stream.on_endpoint is not None
        stream.on_endpoint()  # the provider heard the end long before the 2 s of local silence
        await pipe.push_audio(SILENT)
        await eventually(lambda: any(e["type"] == "ai_response" and e["final"] for e in events))
        await play_until(pipe, events, "metrics")
        await eventually(lambda: pipe.status == "listening")

        assert shape(events) == [
            ("status", "listening"),
            ("transcript", SAID, False),
            ("transcript", SAID, True),
            ("status", "processing"),
            *reply_events(),
            ("status", "speaking"),
            (
                "metrics",
                ("llm_first_token_ms", "stt_ms", "tts_first_audio_ms", "voice_to_voice_ms"),
                {"stt": "scripted-stt", "llm": "scripted", "tts": "tone"},
            ),
            ("status", "listening"),
        ]
        assert llm.calls == 1 and tts.texts == ["Sure, here it is.", "Bye."], "the draft was used"
        assert counter("voice_preemptive_drafts_total", outcome="used") == used + 1
        assert [(m.role, m.content) for m in pipe.conversation.messages] == [
            ("user", SAID),
            ("assistant", "Sure, here it is. Bye."),
        ]
        assert len(stt.streams) == 1 and stream.sent == 21, "the turn ended on the frame after the endpoint"
        # Where the time after the voice went, in ms after its end, on the wall clock for a client.
        (done,) = [r.__dict__ for r in caplog.records if r.getMessage() == "turn complete"]
        assert abs(done["voice_end_unix_ms"] / 1000 - time.time()) < 30
        steps = [done[k] for k in ("taken_ms", "stt_ms", "audio_ready_ms", "voice_to_voice_ms")]
        assert done["loud_end_ms"] == 0 and steps == sorted(steps) and steps[0] >= 0, done
    finally:
        await pipe.stop()


async def test_a_text_only_turn_ends_when_written_and_its_audio_never_plays() -> None:
    events: list[dict[str, Any]] = []
    history: list[list[Message]] = []
    pipe = Pipeline(
        "s2",
        Providers(ScriptedSTT(), ScriptedLLM(), ToneTTS()),  # type: ignore[arg-type]
        events.append,
        on_history=history.append,
    )
    await pipe.start()
    try:
        await pipe.push_text("hi")
        await eventually(lambda: any(e["type"] == "metrics" for e in events))
        assert shape(events)[:-2] == [("status", "processing"), *reply_events()]
        metrics, status = events[-2:]
        assert metrics["type"] == "metrics" and metrics["turn"]["voice_to_voice_ms"] is None
        assert metrics["turn"]["providers"]["llm"] == "scripted"
        assert status == {"type": "status", "processing": "listening"}
        assert [len(h) for h in history] == [1, 2]
        assert history[-1][-1] == Message(role="assistant", content="Sure, here it is. Bye.")
        pipe.media_started()
        for _ in range(10):
            assert await pipe.track.recv_pcm() == bytes(1920), "a written reply is never spoken later"
    finally:
        await pipe.stop()


async def test_a_failing_llm_is_reported_and_the_turn_still_ends() -> None:
    events: list[dict[str, Any]] = []
    pipe = Pipeline("s3", Providers(ScriptedSTT(), ScriptedLLM(fail=True), ToneTTS()), events.append)  # type: ignore[arg-type]
    errors = counter("voice_errors_total", type="llm_failed")
    await pipe.start()
    pipe.media_started()
    try:
        await pipe.push_text("hi")
        await eventually(lambda: len(events) >= 6)
        assert shape(events) == [
            ("status", "listening"),
            ("status", "processing"),
            ("error", "llm_failed"),
            ("ai_response", "", True, None),
            ("metrics", (), None),
            ("status", "listening"),
        ]
        assert "provider" not in events[3]
        assert counter("voice_errors_total", type="llm_failed") == errors + 1
        assert [m.role for m in pipe.conversation.messages] == ["user"]
    finally:
        await pipe.stop()
