"""The turn tracker ends a turn exactly once, whatever order its facts arrive in."""

from __future__ import annotations

from voice_agent.pipeline.frames import (
    BotStoppedSpeakingFrame,
    Frame,
    LLMDoneFrame,
    MediaStateFrame,
    PlayedFrame,
    SentenceFrame,
    TTSAudioFrame,
    TurnEndedFrame,
    TurnStartedFrame,
    UserTurnFrame,
)
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.turns import TurnTracker


class Ends:
    frame_types = (TurnEndedFrame,)

    def __init__(self) -> None:
        self.ended: list[TurnEndedFrame] = []

    def on_frame(self, frame: Frame) -> None:
        assert isinstance(frame, TurnEndedFrame)
        self.ended.append(frame)


def live_turn() -> tuple[FrameBus, Ends]:
    bus = FrameBus()
    ends = Ends()
    bus.subscribe(TurnTracker(bus))
    bus.subscribe(ends)
    bus.publish(MediaStateFrame(live=True))
    bus.publish(TurnStartedFrame(UserTurnFrame("hi", 1)))
    return bus, ends


def play_sentence(bus: FrameBus, text: str) -> None:
    bus.publish(SentenceFrame(text, 1, 0))
    bus.publish(TTSAudioFrame(b"\x00" * 960, 1, 0, text))
    bus.publish(TTSAudioFrame(b"", 1, 0, text, last=True))
    bus.publish(PlayedFrame(1, 0, 960))
    bus.publish(BotStoppedSpeakingFrame(1))


def test_a_reply_played_out_before_the_llm_finished_ends_when_it_finishes() -> None:
    bus, ends = live_turn()
    play_sentence(bus, "Hello there.")
    assert ends.ended == [], "the LLM may still be writing: not over yet"
    bus.publish(LLMDoneFrame(1, "Hello there."))
    assert [(e.turn, e.text, e.interrupted) for e in ends.ended] == [(1, "Hello there.", False)]


def test_a_reply_still_playing_when_the_llm_finishes_ends_when_the_audio_runs_dry() -> None:
    bus, ends = live_turn()
    bus.publish(SentenceFrame("Hello there.", 1, 0))
    bus.publish(TTSAudioFrame(b"\x00" * 960, 1, 0, "Hello there.", last=True))
    bus.publish(LLMDoneFrame(1, "Hello there."))
    assert ends.ended == [], "audio not played yet"
    bus.publish(PlayedFrame(1, 0, 960))
    bus.publish(BotStoppedSpeakingFrame(1))
    assert len(ends.ended) == 1
