"""What the client is told about the call: transcripts, the reply as it is written (and, when it is
cut short, what of it was heard), errors, the agent's status (listening, processing, speaking), the
reply's audio held, resumed or cut (the moment the barge-in gate decides, so the client silences its
own playout buffer at once) and each completed turn's metrics.

An observer; the shapes are the protocol's (docs/api.md). Reply text of a turn no longer in flight
is not sent: a barge-in has already moved the client on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voice_agent.pipeline.frames import (
    BotStartedSpeakingFrame,
    Frame,
    HoldFrame,
    InterruptionFrame,
    LLMDoneFrame,
    LLMTextFrame,
    MediaStateFrame,
    ProviderErrorFrame,
    ResumeFrame,
    TranscriptionFrame,
    TurnEndedFrame,
    TurnMetricsFrame,
    TurnStartedFrame,
)
from voice_agent.pipeline.turns import TurnTracker

EventSink = Callable[[dict[str, Any]], None]


class ClientEvents:
    frame_types = (
        TranscriptionFrame,
        LLMTextFrame,
        LLMDoneFrame,
        ProviderErrorFrame,
        TurnStartedFrame,
        BotStartedSpeakingFrame,
        TurnEndedFrame,
        TurnMetricsFrame,
        MediaStateFrame,
        HoldFrame,
        ResumeFrame,
        InterruptionFrame,
    )

    def __init__(self, emit: EventSink, turns: TurnTracker) -> None:
        self._emit = emit
        self._turns = turns
        self.status = "idle"
        self._held: int | None = None  # the turn the client was told is held

    def on_frame(self, frame: Frame) -> None:
        match frame:
            case TranscriptionFrame(text=text, final=final) if text or final:
                self._emit({"type": "transcript", "text": text, "final": final})
            case LLMTextFrame(turn=turn, text=text, provider=provider) if self._turns.is_current(turn):
                self._reply(text, False, provider)
            case LLMDoneFrame(turn=turn, text=text, provider=provider) if self._turns.is_current(turn):
                self._reply(text, True, provider)
            case ProviderErrorFrame(error=exc):
                self._emit({"type": "error", "code": exc.code, "message": exc.message})
            case TurnStartedFrame():
                self._set_status("processing")
            case BotStartedSpeakingFrame():
                self._set_status("speaking")
            case TurnMetricsFrame(metrics=m):
                self._emit({"type": "metrics", "turn": m.as_event()})
            case HoldFrame(turn=turn):
                self._held = turn
                self._emit({"type": "playback", "state": "held", "turn": turn})
            case ResumeFrame(turn=turn):
                self._resumed(turn)
            case InterruptionFrame(turn=turn):
                self._held = None
                self._emit({"type": "playback", "state": "cut", "turn": turn})
            case TurnEndedFrame(text=text, interrupted=True):
                # The reply's full text went out as it was written; the client shows what was heard.
                self._emit({"type": "ai_interrupted", "text": text})
                self._set_status("listening")
            case TurnEndedFrame(turn=turn):
                self._resumed(turn)  # a turn that ends while held lifts its hold (output.py)
                self._set_status("listening")
            case MediaStateFrame(live=True) if self.status == "idle":
                self._set_status("listening")

    def _resumed(self, turn: int) -> None:
        if self._held == turn:
            self._held = None
            self._emit({"type": "playback", "state": "resumed", "turn": turn})

    def _reply(self, text: str, final: bool, provider: str | None) -> None:
        event: dict[str, Any] = {"type": "ai_response", "text": text, "final": final}
        if provider:
            event["provider"] = provider
        self._emit(event)

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._emit({"type": "status", "processing": status})
