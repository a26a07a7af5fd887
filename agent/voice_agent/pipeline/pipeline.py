"""The per-session pipeline: wires the stages, keeps turn state, and reports events.

    audio -> VAD -> STT -> LLM -> TTS -> output track
                 \\-> transcripts        \\-> ai_response, status, metrics (to the client)

Preemptive generation (preemption.py): when the user pauses, the reply to what they said so far
is drafted during the rest of the end-of-turn silence and used if the turn ends with those words.

Barge-in: when the VAD decides the user started speaking while a turn is in flight, an
InterruptionFrame runs down LLM -> TTS -> output ahead of all queued data. Each stage cancels its
in-flight work and drops its queue; the output track drops its buffer and refuses audio of older
turns. History then records only the part of the reply the user actually heard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voice_agent import metrics
from voice_agent.models import Message
from voice_agent.pipeline.context import Conversation, TurnPlayback
from voice_agent.pipeline.frames import (
    EndFrame,
    InputAudioFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TurnMetrics,
    UserPausedFrame,
    UserResumedFrame,
    UserStartedSpeakingFrame,
    UserTurnFrame,
)
from voice_agent.pipeline.llm import LLMProcessor
from voice_agent.pipeline.output import AIGeneratedAudioTrack, AudioOutputProcessor
from voice_agent.pipeline.preemption import Preemption, PreemptiveLLM, PreemptiveTTS
from voice_agent.pipeline.processor import FrameProcessor
from voice_agent.pipeline.stt import STTProcessor
from voice_agent.pipeline.tts import TTSProcessor
from voice_agent.pipeline.vad import VADProcessor
from voice_agent.providers.base import ProviderError, Providers

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class PipelineConfig:
    end_of_turn_silence_ms: int = 500
    vad_aggressiveness: int = 3
    vad_start_ms: int = 60
    max_utterance_s: float = 30.0
    history_max_messages: int = 24
    preemptive_after_ms: int = 0


class _BargeInGate(FrameProcessor):
    """Between STT and LLM: turns 'user started speaking' into an interruption of the turn."""

    name = "barge-in"

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self._pipeline = pipeline

    async def on_system(self, frame: Any) -> None:
        if isinstance(frame, UserStartedSpeakingFrame):
            self._pipeline.user_resumed()
            await self._pipeline.user_started_speaking()
            return
        if isinstance(frame, UserPausedFrame):
            self._pipeline.user_paused()
            return
        if isinstance(frame, UserResumedFrame):
            self._pipeline.user_resumed()
            return
        await self.push(frame)


class Pipeline:
    def __init__(
        self,
        session_id: str,
        providers: Providers,
        emit: EventSink,
        config: PipelineConfig | None = None,
        history: list[Message] | None = None,
        on_history: Callable[[list[Message]], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.config = config or PipelineConfig()
        self._emit = emit
        self._on_history = on_history
        self.conversation = Conversation(history, self.config.history_max_messages)
        self._turn_counter = 0
        self._active: TurnPlayback | None = None
        self._metrics: dict[int, TurnMetrics] = {}
        self._llm_started: dict[int, float] = {}
        self.status = "idle"
        self.track = AIGeneratedAudioTrack(session_id)
        self._wire_track(self.track)

        self.vad = VADProcessor(
            self.config.vad_aggressiveness,
            self.config.vad_start_ms,
            self.config.end_of_turn_silence_ms,
            self.config.max_utterance_s,
            pause_ms=self.config.preemptive_after_ms,
        )
        llm, tts = PreemptiveLLM(providers.llm), PreemptiveTTS(providers.tts)
        self.preemption = Preemption(llm, tts)
        self._last_interim = ""
        self.stt = STTProcessor(
            providers.stt, self._transcript, self._stt_error, self._new_turn, self.vad.request_end
        )
        self.gate = _BargeInGate(self)
        self.llm = LLMProcessor(llm, self)
        self.tts = TTSProcessor(tts, self)
        self.output = AudioOutputProcessor(self.track)
        self._stages: list[FrameProcessor] = [self.vad, self.stt, self.gate, self.llm, self.tts, self.output]
        for a, b in zip(self._stages, self._stages[1:], strict=False):
            a.link(b)
        self._started = False
        self._media_live = False

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._started:
            self._started = True
            for stage in self._stages:
                await stage.start()

    async def stop(self) -> None:
        self.preemption.discard()
        for stage in self._stages:
            try:
                await stage.stop()
            except Exception:
                log.exception("stopping %s failed", stage.name)
        await self.gate.push(EndFrame())
        self.track.interrupt(self._turn_counter + 1)
        self.track.stop()

    def new_track(self) -> AIGeneratedAudioTrack:
        """A fresh outbound track for a new peer connection (renegotiation, resume)."""
        old = self.track
        self.track = AIGeneratedAudioTrack(self.session_id)
        self.track.interrupt(self._turn_counter + 1 if self._active is None else self._active.turn)
        self._wire_track(self.track)
        self.output.rebind(self.track)
        old.stop()
        return self.track

    def _wire_track(self, track: AIGeneratedAudioTrack) -> None:
        track.on_played = self._played
        track.on_idle = self._idle

    # --- inputs --------------------------------------------------------------------------------
    async def push_audio(self, pcm16k: bytes) -> None:
        await self.vad.queue_frame(InputAudioFrame(pcm16k))

    async def push_text(self, text: str) -> None:
        await self.user_started_speaking()
        await self.stt.submit_text(text)

    async def interrupt(self) -> None:
        await self.user_started_speaking()

    # --- turn control --------------------------------------------------------------------------
    def _new_turn(self) -> int:
        self._turn_counter += 1
        return self._turn_counter

    @property
    def turn_in_flight(self) -> bool:
        return self._active is not None

    async def user_started_speaking(self) -> None:
        active = self._active
        if active is None:
            return
        self._active = None
        metrics.BARGE_INS.inc()
        metrics.TURNS.labels("interrupted").inc()
        await self.gate.push(InterruptionFrame(active.turn))
        heard = active.heard_text()
        if heard:
            self.conversation.add("assistant", heard, interrupted=True)
            self._history_changed()
        log.info("barge-in", extra={"turn": active.turn, "heard_chars": len(heard)})
        self._set_status("listening")

    # --- TurnObserver (called by stages) --------------------------------------------------------
    def history(self) -> list[Message]:
        return list(self.conversation.messages)

    def user_paused(self) -> None:
        if self._active is None and self._last_interim:
            self.preemption.start(self.history(), self._last_interim)

    def user_resumed(self) -> None:
        """More speech: whatever was drafted answers words the user has not finished."""
        if self.preemption.text is not None:
            metrics.PREEMPTIONS.labels("dropped").inc()
        self.preemption.discard()

    def turn_started(self, frame: UserTurnFrame) -> None:
        if self.preemption.text is not None:
            if frame.text == self.preemption.text:
                metrics.PREEMPTIONS.labels("used").inc()
                self.preemption.commit()
            else:
                metrics.PREEMPTIONS.labels("missed").inc()
                self.preemption.discard()
        self._last_interim = ""
        self._active = TurnPlayback(frame.turn)
        self.conversation.add("user", frame.text)
        self._history_changed()
        m = TurnMetrics(speech_end_at=frame.speech_end_at, stt_ms=frame.stt_ms)
        if frame.stt_provider is not None:
            m.providers["stt"] = frame.stt_provider
        self._metrics = {frame.turn: m}
        self._llm_started[frame.turn] = time.monotonic()
        if frame.stt_ms is not None:
            metrics.STT_LATENCY.observe(frame.stt_ms / 1000)
        self._set_status("processing")

    def llm_text(self, turn: int, text_so_far: str, first_token: bool) -> None:
        if not self._is_current(turn):
            return
        if first_token:
            started = self._llm_started.pop(turn, time.monotonic())
            ms = (time.monotonic() - started) * 1000
            self._metrics[turn].llm_first_token_ms = ms
            metrics.LLM_FIRST_TOKEN.observe(ms / 1000)
        self._emit({"type": "ai_response", "text": text_so_far, "final": False, **self._llm_provider(turn)})

    def sentence(self, turn: int, index: int, text: str) -> None:
        if self._active is not None and self._active.turn == turn:
            self._active.add_sentence(index, text)

    def llm_done(self, turn: int, text: str) -> None:
        if not self._is_current(turn) or self._active is None:
            return
        self._active.llm_done = True
        self._emit({"type": "ai_response", "text": text, "final": True, **self._llm_provider(turn)})
        if not self._media_live:
            # Text-only session (no audio peer): the client has read the whole reply, and the
            # synthesized audio must never surface later when a peer does connect.
            self.track.interrupt(turn + 1)
            self._finish_turn(turn, text)
        elif not text:
            self._finish_turn(turn)

    def tts_audio(self, turn: int, index: int, nbytes: int, last: bool, first_audio_ms: float | None) -> None:
        if not self._is_current(turn) or self._active is None:
            return
        self._active.add_audio(index, nbytes, last)
        if first_audio_ms is not None:
            self._metrics[turn].tts_first_audio_ms = first_audio_ms
            metrics.TTS_FIRST_AUDIO.observe(first_audio_ms / 1000)
        if last:
            self._maybe_finish(turn)

    def served(self, turn: int, stage: str, provider: str) -> None:
        m = self._metrics.get(turn)
        if m is not None:
            m.providers[stage] = provider

    def _llm_provider(self, turn: int) -> dict[str, str]:
        m = self._metrics.get(turn)
        name = m.providers.get("llm") if m is not None else None
        return {"provider": name} if name else {}

    def provider_error(self, exc: ProviderError, turn: int | None) -> None:
        metrics.ERRORS.labels(exc.code).inc()
        log.warning("provider error", extra={"provider": exc.provider, "code": exc.code})
        self._emit({"type": "error", "code": exc.code, "message": exc.message})

    # --- track callbacks (called from recv, every 20 ms while speaking) -------------------------
    def _played(self, turn: int, index: int, nbytes: int) -> None:
        active = self._active
        if active is None or active.turn != turn:
            return
        m = self._metrics.get(turn)
        if m is not None and m.voice_to_voice_ms is None:
            m.voice_to_voice_ms = (time.monotonic() - m.speech_end_at) * 1000 if m.speech_end_at else None
            if m.voice_to_voice_ms is not None:
                metrics.VOICE_TO_VOICE.observe(m.voice_to_voice_ms / 1000)
            self._set_status("speaking")
        active.played(index, nbytes)

    def _idle(self, turn: int) -> None:
        self._maybe_finish(turn)

    def _maybe_finish(self, turn: int) -> None:
        active = self._active
        if active is not None and active.turn == turn and active.finished:
            self._finish_turn(turn)

    def _finish_turn(self, turn: int, delivered: str | None = None) -> None:
        active = self._active
        if active is None or active.turn != turn:
            return
        self._active = None
        text = active.full_text() if delivered is None else delivered
        if text:
            self.conversation.add("assistant", text)
            self._history_changed()
        metrics.TURNS.labels("completed").inc()
        m = self._metrics.pop(turn, None)
        if m is not None:
            event = m.as_event()
            log.info(
                "turn complete", extra={"turn": turn, **{k: v for k, v in event.items() if k.endswith("_ms")}}
            )
            self._emit({"type": "metrics", "turn": event})
        self._set_status("listening")

    # --- helpers -------------------------------------------------------------------------------
    def _is_current(self, turn: int) -> bool:
        return self._active is not None and self._active.turn == turn

    def _transcript(self, frame: TranscriptionFrame) -> None:
        if not frame.final:
            self._last_interim = frame.text
        if frame.text or frame.final:
            self._emit({"type": "transcript", "text": frame.text, "final": frame.final})

    def _stt_error(self, exc: ProviderError) -> None:
        self.provider_error(exc, None)

    def _history_changed(self) -> None:
        if self._on_history is not None:
            self._on_history(self.history())

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._emit({"type": "status", "processing": status})

    def media_started(self) -> None:
        self._media_live = True
        if self.status == "idle":
            self._set_status("listening")

    def media_stopped(self) -> None:
        self._media_live = False
