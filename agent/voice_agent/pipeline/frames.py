"""Typed frames that move between pipeline stages.

DataFrames are queued and processed in order; SystemFrames are handled the moment they arrive,
ahead of anything queued (that is what makes an interruption immediate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Frame:
    pass


@dataclass(slots=True)
class SystemFrame(Frame):
    pass


@dataclass(slots=True)
class DataFrame(Frame):
    pass


# --- system frames ---------------------------------------------------------------------------
@dataclass(slots=True)
class UserStartedSpeakingFrame(SystemFrame):
    at: float


@dataclass(slots=True)
class UserStoppedSpeakingFrame(SystemFrame):
    """`at` is when the last voiced audio ended (not when the silence timer fired)."""

    at: float


@dataclass(slots=True)
class UserPausedFrame(SystemFrame):
    """The user has been silent for the preemptive delay: the turn may be about to end."""

    at: float


@dataclass(slots=True)
class UserResumedFrame(SystemFrame):
    """Speech again after a UserPausedFrame: the turn goes on."""


@dataclass(slots=True)
class InterruptionFrame(SystemFrame):
    """Cancel everything of the current turn downstream; nothing of it may play afterwards."""

    turn: int


@dataclass(slots=True)
class EndFrame(SystemFrame):
    pass


# --- data frames -----------------------------------------------------------------------------
@dataclass(slots=True)
class InputAudioFrame(DataFrame):
    """20 ms of 16 kHz mono s16le PCM from the user."""

    pcm: bytes
    voiced: bool = False


@dataclass(slots=True)
class TranscriptionFrame(DataFrame):
    text: str
    final: bool
    at: float = 0.0


@dataclass(slots=True)
class UserTurnFrame(DataFrame):
    """A complete user utterance (from STT or typed text) that starts an agent turn."""

    text: str
    turn: int
    speech_end_at: float | None = None
    stt_ms: float | None = None
    stt_provider: str | None = None


@dataclass(slots=True)
class SentenceFrame(DataFrame):
    """One sentence of the reply, the unit TTS synthesizes so speech starts early."""

    text: str
    turn: int
    index: int


@dataclass(slots=True)
class LLMDoneFrame(DataFrame):
    turn: int
    text: str


@dataclass(slots=True)
class TTSAudioFrame(DataFrame):
    pcm: bytes
    turn: int
    index: int
    text: str = ""
    last: bool = False


@dataclass(slots=True)
class TurnMetrics:
    speech_end_at: float | None = None
    stt_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_audio_ms: float | None = None
    voice_to_voice_ms: float | None = None
    providers: dict[str, str] = field(default_factory=dict)

    def as_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "stt_ms": self.stt_ms,
            "llm_first_token_ms": self.llm_first_token_ms,
            "tts_first_audio_ms": self.tts_first_audio_ms,
            "voice_to_voice_ms": self.voice_to_voice_ms,
        }
        if self.providers:
            event["providers"] = dict(self.providers)  # which provider answered each stage
        return event
