"""The turn in flight: what of its reply exists, what of it has played, and when it is over.

An observer. It derives two frames the others build on: BotStartedSpeakingFrame (the reply's first
audio reached the user) and TurnEndedFrame (completed: the whole reply played, or was written to a
text-only client; interrupted: a barge-in, with only the words actually heard). Frames of any other
turn than the one in flight are ignored, so a cancelled turn's stragglers change nothing.
"""

from __future__ import annotations

import logging

from voice_agent.pipeline.context import TurnPlayback
from voice_agent.pipeline.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMDoneFrame,
    MediaStateFrame,
    PlayedFrame,
    SentenceFrame,
    TTSAudioFrame,
    TurnEndedFrame,
    TurnStartedFrame,
)
from voice_agent.pipeline.observer import FrameBus

log = logging.getLogger(__name__)


class TurnTracker:
    frame_types = (
        TurnStartedFrame,
        SentenceFrame,
        TTSAudioFrame,
        LLMDoneFrame,
        PlayedFrame,
        BotStoppedSpeakingFrame,
        InterruptionFrame,
        MediaStateFrame,
    )

    def __init__(self, bus: FrameBus) -> None:
        self._bus = bus
        self._active: TurnPlayback | None = None
        self._playing = False
        self._media_live = False

    @property
    def active_turn(self) -> int | None:
        return None if self._active is None else self._active.turn

    def is_current(self, turn: int) -> bool:
        return self._active is not None and self._active.turn == turn

    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, TurnStartedFrame):
            self._active = TurnPlayback(frame.turn)
            self._playing = False
        elif isinstance(frame, MediaStateFrame):
            self._media_live = frame.live
        elif self._active is not None and self._active.turn == getattr(frame, "turn", None):
            self._on_current(self._active, frame)  # every other frame type here carries its turn

    def _on_current(self, active: TurnPlayback, frame: Frame) -> None:
        match frame:
            case SentenceFrame(text=text, index=index):
                active.add_sentence(index, text)
            case TTSAudioFrame(pcm=pcm, index=index, last=last):
                active.add_audio(index, len(pcm), last)
                if last:
                    self._end_if_played(active)
            case LLMDoneFrame(text=text):
                active.llm_done = True
                if not self._media_live:
                    # Text-only session (no audio peer): the client has read the whole reply.
                    self._end(active, text)
                elif not text:
                    self._end(active, active.full_text())
                else:
                    # Every sentence may have played out before the stream ended (the last tokens
                    # added no sentence): then no later audio or running-dry report would end it.
                    self._end_if_played(active)
            case PlayedFrame(index=index, nbytes=nbytes):
                # Played audio never ends a turn here (the track's running-dry report does), so
                # the track is never interrupted from inside its own send loop.
                if not self._playing:
                    self._playing = True
                    self._bus.publish(BotStartedSpeakingFrame(active.turn))
                active.played(index, nbytes)
            case BotStoppedSpeakingFrame():
                self._end_if_played(active)
            case InterruptionFrame():
                heard = active.heard_text()
                log.info("barge-in", extra={"turn": active.turn, "heard_chars": len(heard)})
                self._end(active, heard, interrupted=True)

    def _end_if_played(self, active: TurnPlayback) -> None:
        if active.finished:
            self._end(active, active.full_text())

    def _end(self, active: TurnPlayback, text: str, interrupted: bool = False) -> None:
        self._active = None
        self._bus.publish(TurnEndedFrame(active.turn, text, interrupted))
