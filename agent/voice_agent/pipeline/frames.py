"""Typed frames: the one channel of the pipeline.

Stages push frames to their neighbours, and every pushed frame is also seen by the observers
(turn state, metrics, client events, history) at the moment it is pushed. There are three kinds:

- DataFrames are queued and processed in order.
- SystemFrames are handled the moment they arrive, ahead of anything queued (that is what makes
  an interruption immediate). Most travel downstream; three travel upstream: EndOfTurnRequestFrame
  and EndOfTurnWordsFrame (STT to VAD) and ClassifyUtteranceFrame (barge-in gate to STT).
- ReportFrames are facts no stage acts on (a transcript, a token, audio played): they go to the
  observers only. Observers derive a few more (a turn's end, its metrics) on the same channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voice_agent.providers.base import ProviderError


@dataclass(slots=True)
class Frame:
    pass


@dataclass(slots=True)
class SystemFrame(Frame):
    pass


@dataclass(slots=True)
class DataFrame(Frame):
    pass


@dataclass(slots=True)
class ReportFrame(Frame):
    pass


# --- system frames ---------------------------------------------------------------------------
@dataclass(slots=True)
class UserStartedSpeakingFrame(SystemFrame):
    at: float


@dataclass(slots=True)
class UserStoppedSpeakingFrame(SystemFrame):
    """`at` is when the last voiced audio ended (not when the silence timer fired); `loud_at` when the
    last frame loud enough to be the voice itself did (the VAD calls a few quiet frames after it
    voiced, vad.py)."""

    at: float
    loud_at: float | None = None


@dataclass(slots=True)
class UserPausedFrame(SystemFrame):
    """The user has been silent for the preemptive delay: the turn may be about to end."""

    at: float


@dataclass(slots=True)
class UserResumedFrame(SystemFrame):
    """Speech again after a UserPausedFrame: the turn goes on."""


@dataclass(slots=True)
class EndOfTurnRequestFrame(SystemFrame):
    """Upstream, STT to VAD: the provider heard the end of the turn before the local silence did.

    Sent while the STT stage handles an audio frame, so the VAD ends the turn on that same frame,
    in order with the audio."""


@dataclass(slots=True)
class EndOfTurnQueryFrame(SystemFrame):
    """Downstream, VAD to STT: the user paused for the adaptive detector's short silence; has the turn
    ended? STT answers at once with an EndOfTurnWordsFrame, so the VAD decides on this audio frame."""


@dataclass(slots=True)
class EndOfTurnWordsFrame(SystemFrame):
    """Upstream, STT to VAD: the words so far, the answer to an EndOfTurnQueryFrame (`text` None: no
    recognizer could say), or newer ones while the pause lasts. `at_voice_end`: the same recognizer's
    words as the voice ended, a second look; `spent_s`: time STT spent on them before it was asked,
    part of the decision's cost."""

    text: str | None
    spent_s: float = 0.0
    at_voice_end: str | None = None


@dataclass(slots=True)
class InterruptRequestFrame(SystemFrame):
    """The client stopped the reply (typed text, an interrupt message): a barge-in without speech."""


@dataclass(slots=True)
class InterruptionFrame(SystemFrame):
    """Cancel everything of the current turn downstream; nothing of it may play afterwards."""

    turn: int


@dataclass(slots=True)
class HoldFrame(SystemFrame):
    """User sound during a reply that may not be an interruption: the output track sends silence and
    keeps its place (nothing dropped, nothing counted as played) until a ResumeFrame or the turn ends."""

    turn: int


@dataclass(slots=True)
class ResumeFrame(SystemFrame):
    """The sound that held the reply was not an interruption: play on from the exact byte it paused at."""

    turn: int


@dataclass(slots=True)
class ClassifyUtteranceFrame(SystemFrame):
    """Upstream, barge-in gate to STT: the utterance just started began during a reply, so its final
    transcript goes to the gate (HeldTranscriptFrame), which reports it or drops it."""

    utterance: int


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
class UserTurnFrame(DataFrame):
    """A complete user utterance (from STT or typed text) that starts an agent turn."""

    text: str
    turn: int
    speech_end_at: float | None = None
    stt_ms: float | None = None
    stt_provider: str | None = None
    # When the voice's last loud frame came in, and when the VAD took the turn (monotonic s): with
    # `speech_end_at` and `stt_ms`, where the time after the voice went (docs/performance.md).
    loud_end_at: float | None = None
    taken_at: float | None = None


@dataclass(slots=True)
class HeldTranscriptFrame(DataFrame):
    """STT to the gate: the final transcript of an utterance the gate is classifying, not yet reported.
    `turn` is the user turn it makes if the gate lets it through (None for an empty transcript)."""

    utterance: int
    transcription: TranscriptionFrame
    turn: UserTurnFrame | None


@dataclass(slots=True)
class SentenceFrame(DataFrame):
    """One sentence of the reply, the unit TTS synthesizes so speech starts early."""

    text: str
    turn: int
    index: int


@dataclass(slots=True)
class TTSAudioFrame(DataFrame):
    """`first_audio_ms`: set on the turn's first audio (synthesis time of its sentence); `provider`:
    who synthesized, set until the turn's first audio (differs from the configured one on fallback)."""

    pcm: bytes
    turn: int
    index: int
    text: str = ""
    last: bool = False
    first_audio_ms: float | None = None
    provider: str | None = None


# --- report frames: facts for the observers ------------------------------------------------
@dataclass(slots=True)
class TranscriptionFrame(ReportFrame):
    text: str
    final: bool
    at: float = 0.0


@dataclass(slots=True)
class TurnStartedFrame(ReportFrame):
    """The LLM stage took up a user turn. Observers run as it is reported, so the user's words are in
    the history (and a draft is settled) by the time the LLM stage reads it."""

    user: UserTurnFrame

    @property
    def turn(self) -> int:
        return self.user.turn


@dataclass(slots=True)
class LLMTextFrame(ReportFrame):
    """The reply so far; `provider` answered the first token (None before it)."""

    turn: int
    text: str
    first_token: bool
    provider: str | None


@dataclass(slots=True)
class LLMDoneFrame(ReportFrame):
    turn: int
    text: str
    provider: str | None = None


@dataclass(slots=True)
class ProviderErrorFrame(ReportFrame):
    error: ProviderError
    turn: int | None = None


@dataclass(slots=True)
class PlayedFrame(ReportFrame):
    """The output track sent `nbytes` of a sentence to the user (every 20 ms while speaking)."""

    turn: int
    index: int
    nbytes: int


@dataclass(slots=True)
class BotStoppedSpeakingFrame(ReportFrame):
    """The output track ran out of audio after playing some of `turn`."""

    turn: int


@dataclass(slots=True)
class MediaStateFrame(ReportFrame):
    """Whether an audio peer is connected: without one, a reply is delivered as text only."""

    live: bool


@dataclass(slots=True)
class BotStartedSpeakingFrame(ReportFrame):
    """Derived by the turn tracker: the first audio of the turn in flight reached the user."""

    turn: int


@dataclass(slots=True)
class TurnEndedFrame(ReportFrame):
    """Derived by the turn tracker: the turn is over; `text` is what the user got of the reply
    (all of it, or what was heard before a barge-in)."""

    turn: int
    text: str
    interrupted: bool


@dataclass(slots=True)
class TurnMetrics:
    speech_end_at: float | None = None
    loud_end_at: float | None = None
    taken_at: float | None = None
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


@dataclass(slots=True)
class TurnMetricsFrame(ReportFrame):
    """Derived by the metrics observer when a turn completes."""

    turn: int
    metrics: TurnMetrics
