"""Turn metrics: the latency histograms, turn and error counters, and each turn's own record.

An observer. A completed turn's record (stt, LLM first token, TTS first audio, voice-to-voice,
which provider answered each stage) is logged and derived as a TurnMetricsFrame for the client.
The log line also has where the time after the user's voice went, on the wall clock, so a client
on the same machine can line it up with its own timing of the turn (bench/browser.py): each step
in ms after the last voiced frame, and that frame's Unix time.
"""

from __future__ import annotations

import logging
import time

from voice_agent.pipeline.frames import (
    BotStartedSpeakingFrame,
    Frame,
    LLMTextFrame,
    ProviderErrorFrame,
    TTSAudioFrame,
    TurnEndedFrame,
    TurnMetrics,
    TurnMetricsFrame,
    TurnStartedFrame,
)
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)


class TurnMetricsObserver:
    frame_types = (
        TurnStartedFrame,
        LLMTextFrame,
        TTSAudioFrame,
        BotStartedSpeakingFrame,
        TurnEndedFrame,
        ProviderErrorFrame,
    )

    def __init__(self, bus: FrameBus, turns: TurnTracker) -> None:
        self._bus = bus
        self._turns = turns
        self._metrics: dict[int, TurnMetrics] = {}  # the latest turn's, until it completes
        self._llm_started: dict[int, float] = {}
        self._audio_ready_at: dict[int, float] = {}  # the turn's first audio into the track

    def on_frame(self, frame: Frame) -> None:
        match frame:
            case TurnStartedFrame(user=user):
                record = TurnMetrics(
                    speech_end_at=user.speech_end_at,
                    loud_end_at=user.loud_end_at,
                    taken_at=user.taken_at,
                    stt_ms=user.stt_ms,
                )
                if user.stt_provider is not None:
                    record.providers["stt"] = user.stt_provider
                self._metrics = {user.turn: record}
                self._llm_started = {user.turn: time.monotonic()}
                self._audio_ready_at = {}
                if user.stt_ms is not None:
                    metrics.STT_LATENCY.observe(user.stt_ms / 1000)
            case LLMTextFrame(turn=turn, first_token=True, provider=provider):
                self._served(turn, "llm", provider)
                if self._turns.is_current(turn):
                    started = self._llm_started.pop(turn, time.monotonic())
                    ms = (time.monotonic() - started) * 1000
                    self._metrics[turn].llm_first_token_ms = ms
                    metrics.LLM_FIRST_TOKEN.observe(ms / 1000)
            case TTSAudioFrame(turn=turn, first_audio_ms=first_ms, provider=provider):
                self._served(turn, "tts", provider)
                if first_ms is not None and self._turns.is_current(turn):
                    self._audio_ready_at[turn] = time.monotonic()
                    self._metrics[turn].tts_first_audio_ms = first_ms
                    metrics.TTS_FIRST_AUDIO.observe(first_ms / 1000)
            case BotStartedSpeakingFrame(turn=turn):
                m = self._metrics.get(turn)
                if m is not None and m.speech_end_at is not None:
                    m.voice_to_voice_ms = (time.monotonic() - m.speech_end_at) * 1000
                    metrics.VOICE_TO_VOICE.observe(m.voice_to_voice_ms / 1000)
            case TurnEndedFrame(turn=turn, interrupted=True):
                metrics.BARGE_INS.inc()
                metrics.TURNS.labels("interrupted").inc()
            case TurnEndedFrame(turn=turn):
                metrics.TURNS.labels("completed").inc()
                m = self._metrics.pop(turn, None)
                if m is not None:
                    timings = {k: v for k, v in m.as_event().items() if k.endswith("_ms")}
                    steps = self._steps(m, self._audio_ready_at.pop(turn, None))
                    log.info("turn complete", extra={"turn": turn, **timings, **steps})
                    self._bus.publish(TurnMetricsFrame(turn, m))
            case ProviderErrorFrame(error=exc):
                metrics.ERRORS.labels(exc.code).inc()
                log.warning("provider error", extra={"provider": exc.provider, "code": exc.code})

    @staticmethod
    def _steps(m: TurnMetrics, audio_ready_at: float | None) -> dict[str, float]:
        """The turn's steps in ms after its last voiced frame (a negative one came before it), and
        that frame's Unix time in ms: the voice's last loud frame, the turn taken, the first reply
        audio into the track (the final transcript and the first frame sent are `stt_ms` and
        `voice_to_voice_ms`)."""
        end = m.speech_end_at
        if end is None:
            return {}
        steps = {"voice_end_unix_ms": round((time.time() - time.monotonic() + end) * 1000, 1)}
        for name, at in (
            ("loud_end_ms", m.loud_end_at),
            ("taken_ms", m.taken_at),
            ("audio_ready_ms", audio_ready_at),
        ):
            if at is not None:
                steps[name] = round((at - end) * 1000, 1)
        return steps

    def _served(self, turn: int, stage: str, provider: str | None) -> None:
        m = self._metrics.get(turn)
        if m is not None and provider is not None:
            m.providers[stage] = provider
