"""The per-session pipeline: wires the stages in a chain and the observers to the frames' bus.

    audio -> VAD -> STT -> barge-in gate -> LLM -> TTS -> output track
               (every pushed or reported frame) -> preemption, turn metrics, client events,
                                                   turn tracker, history, output

Stages pass frames along; facts about the turn travel on the same frames, to observers, which
keep the turn state (turns.py), the metrics (turn_metrics.py), the client's events
(client_events.py), the history (history.py) and the preemptive drafts (preemption.py).

Barge-in: when the VAD decides the user started speaking while a turn is in flight, the gate holds
the reply's audio and decides whether the sound is an interruption (barge_in.py). If it is, its
InterruptionFrame runs down LLM -> TTS -> output ahead of all queued data. Each stage cancels its
in-flight work and drops its queue; the output track drops its buffer and refuses audio of older
turns. History then records only the part of the reply the user actually heard. If it is not, the
reply plays on from where it paused and the sound never becomes a turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.pipeline.barge_in import BargeInGate, Policy
from voice_agent.pipeline.client_events import ClientEvents, EventSink
from voice_agent.pipeline.context import Conversation
from voice_agent.pipeline.end_of_turn import Detector, EndOfTurn
from voice_agent.pipeline.frames import EndFrame, InputAudioFrame, InterruptRequestFrame, MediaStateFrame
from voice_agent.pipeline.history import HistoryRecorder
from voice_agent.pipeline.llm import LLMProcessor
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.output import AudioOutputProcessor
from voice_agent.pipeline.preemption import Preemption, PreemptionObserver, PreemptiveLLM, PreemptiveTTS
from voice_agent.pipeline.processor import FrameProcessor
from voice_agent.pipeline.stt import STTProcessor
from voice_agent.pipeline.tts import TTSProcessor
from voice_agent.pipeline.turn_metrics import TurnMetricsObserver
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.pipeline.vad import VADProcessor
from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Providers

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    end_of_turn_silence_ms: int = 500
    vad_aggressiveness: int = 3
    vad_start_ms: int = 60
    max_utterance_s: float = 30.0
    history_max_messages: int = 24
    preemptive_after_ms: int = 0
    turn_detector: Detector = "fixed"
    turn_min_silence_ms: int = 200
    turn_max_silence_ms: int = 1600
    interruption: Policy = "classify"
    interruption_min_speech_ms: int = 700


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
        self.conversation = Conversation(history, self.config.history_max_messages)
        self.bus = FrameBus()
        self.turns = TurnTracker(self.bus)
        self.events = ClientEvents(emit, self.turns)
        self.track = AIGeneratedAudioTrack(session_id)
        llm, tts = PreemptiveLLM(providers.llm), PreemptiveTTS(providers.tts)
        self.preemption = Preemption(llm, tts)

        self.vad = VADProcessor(
            self.config.vad_aggressiveness,
            self.config.vad_start_ms,
            self.config.end_of_turn_silence_ms,
            self.config.max_utterance_s,
            pause_ms=self.config.preemptive_after_ms,
            end_of_turn=EndOfTurn(
                self.config.turn_detector,
                self.config.end_of_turn_silence_ms,
                self.config.turn_min_silence_ms,
                self.config.turn_max_silence_ms,
            ),
        )
        self.stt = STTProcessor(providers.stt, words_at_voice_end=self.config.turn_detector == "adaptive")
        self.gate = BargeInGate(
            self.turns,
            self.config.interruption,
            self.config.interruption_min_speech_ms,
            start_ms=self.config.vad_start_ms,
        )
        self.llm = LLMProcessor(llm, self.conversation)
        self.tts = TTSProcessor(tts)
        self.output = AudioOutputProcessor(self.track)
        self._stages: list[FrameProcessor] = [self.vad, self.stt, self.gate, self.llm, self.tts, self.output]
        for a, b in zip(self._stages, self._stages[1:], strict=False):
            a.link(b)
        for stage in self._stages:
            stage.attach(self.bus)

        # The order is the client's event order where one frame leads to another (observer.py):
        # metrics and client events see a frame before the tracker derives the turn's end from it,
        # and the metrics derive a completed turn's record before the client hears the status.
        self.bus.subscribe(PreemptionObserver(self.preemption, self.turns, self.conversation))
        self.bus.subscribe(TurnMetricsObserver(self.bus, self.turns))
        self.bus.subscribe(self.events)
        self.bus.subscribe(self.turns)
        self.bus.subscribe(HistoryRecorder(self.conversation, on_history))
        self.bus.subscribe(self.output)
        self.bus.subscribe(self.gate)
        self._started = False

    @property
    def status(self) -> str:
        return self.events.status

    @property
    def at_turn_boundary(self) -> bool:
        """Neither side is speaking and no turn is on its way: the user is not talking (the VAD), no
        transcript is pending, no reply is being made or played. A call stopped here loses nothing."""
        return (
            self.status in ("idle", "listening")
            and not self.vad.speaking
            and not self.stt.finalizing
            and self.turns.active_turn is None
        )

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
        await self.gate.queue_frame(EndFrame())
        self.track.interrupt(self.stt.last_turn + 1)
        self.track.stop()

    def new_track(self) -> AIGeneratedAudioTrack:
        """A fresh outbound track for a new peer connection (renegotiation, resume)."""
        old = self.track
        self.track = AIGeneratedAudioTrack(self.session_id)
        active = self.turns.active_turn
        self.track.interrupt(self.stt.last_turn + 1 if active is None else active)
        if old.held is not None:
            self.track.hold(old.held)  # a hold in progress goes on in the new track until decided
        self.output.bind(self.track)
        old.stop()
        return self.track

    # --- inputs --------------------------------------------------------------------------------
    async def push_audio(self, pcm16k: bytes) -> None:
        await self.vad.queue_frame(InputAudioFrame(pcm16k))

    async def push_text(self, text: str) -> None:
        await self.interrupt()
        await self.stt.submit_text(text)

    async def interrupt(self) -> None:
        await self.gate.queue_frame(InterruptRequestFrame())

    def media_started(self) -> None:
        self.bus.publish(MediaStateFrame(live=True))

    def media_stopped(self) -> None:
        self.bus.publish(MediaStateFrame(live=False))
