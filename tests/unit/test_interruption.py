"""The barge-in gate's decisions: which sounds during a reply cut it, which let it play on, and that a
hold always ends. The gate alone between two recording stages, fed frames as the VAD and STT make them."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support import waits
from voice_agent.pipeline.barge_in import QUIET_MS, BargeInGate, Policy, heard_words
from voice_agent.pipeline.frames import (
    ClassifyUtteranceFrame,
    Frame,
    HeldTranscriptFrame,
    HoldFrame,
    InputAudioFrame,
    InterruptionFrame,
    InterruptRequestFrame,
    LLMDoneFrame,
    MediaStateFrame,
    ResumeFrame,
    TranscriptionFrame,
    TurnStartedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnFrame,
)
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.processor import DOWNSTREAM, Direction, FrameProcessor
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.pipeline.vad import PREROLL_MS

eventually = functools.partial(waits.until, timeout=5.0, interval=0.005)
QUIET_FRAMES = QUIET_MS // 20
PREROLL_FRAMES = PREROLL_MS // 20  # the VAD sends them right after its start decision


@pytest.mark.parametrize(
    ("text", "mid_reply", "heard"),
    [
        ("Mm-hmm.", True, []),  # a cloud recognizer's spelling
        ("mhm", True, []),
        ("Uh-huh.", True, []),
        ("yeah", True, []),
        ("Okay, okay.", True, []),
        ("all right", True, []),
        ("O.K.", True, []),
        ("hmmm", True, []),
        ("an m h and m", True, []),  # what the offline recognizer makes of "mm-hmm"
        ("ah", True, []),  # ... and of a cough
        ("i", True, []),
        ("", True, []),
        ("wait", True, ["wait"]),
        ("stop", True, ["stop"]),
        ("what is that", True, ["what", "that"]),
        ("no", True, ["no"]),
        ("Uh-uh.", True, ["uhuh"]),  # a no, not an uh-huh
        ("okay so", True, ["so"]),
        ("too", True, ["too"]),  # not "to": repeated letters fold only for backchannels and hums
        ("yes", False, ["yes"]),  # once the reply is over, an acknowledgement is an answer
        ("mm-hmm", False, ["mmhmm"]),
        ("uh um", False, []),  # ... and a hum still is not
    ],
)
def test_heard_words(text: str, mid_reply: bool, heard: list[str]) -> None:
    assert heard_words(text, mid_reply) == heard


class Recorder(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        self.frames.append(frame)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]


class Call:
    """A reply in flight (turn 1) and the gate between STT (`up`) and the LLM (`down`)."""

    def __init__(self, policy: Policy = "classify", hold_limit_s: float | None = None) -> None:
        self.bus = FrameBus()
        self.turns = TurnTracker(self.bus)
        self.bus.subscribe(self.turns)
        self.gate = BargeInGate(self.turns, policy, 700, start_ms=60, hold_limit_s=hold_limit_s)
        self.up, self.down = Recorder(), Recorder()
        self.up.link(self.gate).link(self.down)
        self.gate.attach(self.bus)
        self.bus.subscribe(self.gate)
        self.reports: list[TranscriptionFrame] = []
        self.bus.subscribe(Reports(self.reports))
        self.bus.publish(MediaStateFrame(live=True))
        self.bus.publish(TurnStartedFrame(UserTurnFrame("tell me a story", 1)))

    async def start(self) -> None:
        """Speech starts: 60 ms voiced so far, sent with the 240 ms before it (the VAD marks all voiced)."""
        await self.gate.queue_frame(UserStartedSpeakingFrame(at=0.0))
        self.audio(True, PREROLL_FRAMES)

    def audio(self, voiced: bool, frames: int = 1) -> None:
        for _ in range(frames):
            self.bus.publish(InputAudioFrame(b"", voiced=voiced))

    def hypothesis(self, text: str) -> None:
        self.bus.publish(TranscriptionFrame(text, final=False))

    async def stop(self) -> None:
        await self.gate.queue_frame(UserStoppedSpeakingFrame(at=0.0))

    async def final(self, text: str, utterance: int = 1) -> UserTurnFrame | None:
        turn = UserTurnFrame(text, 2) if text else None
        await self.gate.queue_frame(HeldTranscriptFrame(utterance, TranscriptionFrame(text, True), turn))
        return turn

    def end_turn(self, turn: int) -> None:
        """The reply played to its end (the tracker ends a turn whose LLM said nothing more)."""
        self.bus.publish(LLMDoneFrame(turn, ""))
        assert self.turns.active_turn is None

    def kinds(self) -> list[type[Frame]]:
        return [type(f) for f in self.down.frames]


class Reports:
    frame_types = (TranscriptionFrame,)

    def __init__(self, into: list[TranscriptionFrame]) -> None:
        self.into = into

    def on_frame(self, frame: Frame) -> None:
        assert isinstance(frame, TranscriptionFrame)
        if frame.final:
            self.into.append(frame)


def count(kind: str) -> float:
    return REGISTRY.get_sample_value("voice_interruptions_total", {"kind": kind}) or 0.0


async def test_a_backchannel_holds_the_reply_then_lets_it_play_on_and_never_becomes_a_turn() -> None:
    call = Call()
    false, resumed, real = count("false"), count("resumed"), count("real")
    await call.start()
    assert call.up.of(ClassifyUtteranceFrame) == [ClassifyUtteranceFrame(1)], "STT hands its final here"
    assert call.kinds() == [HoldFrame], "the reply's audio pauses the moment the sound starts"
    call.audio(True, 12)
    call.hypothesis("yeah")
    call.hypothesis("yeah")
    call.audio(False, QUIET_FRAMES - 1)
    assert call.kinds() == [HoldFrame], "a short gap is not the end of the sound"
    call.audio(False)
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame])
    assert call.down.frames[1] == ResumeFrame(1)

    await call.stop()
    await call.final("yeah")
    assert call.kinds() == [HoldFrame, ResumeFrame], "no turn, no interruption"
    assert [r.text for r in call.reports] == [""], "the client clears what it showed, and sees no turn"
    assert (count("false"), count("resumed"), count("real")) == (false + 1, resumed + 1, real)


async def test_words_heard_twice_cut_the_reply_and_the_utterance_becomes_the_turn() -> None:
    call = Call()
    real = count("real")
    await call.start()
    call.audio(True, 10)
    call.hypothesis("why")  # a first hypothesis is often wrong: not enough
    call.audio(True, 10)
    assert call.kinds() == [HoldFrame]
    call.hypothesis("wait")
    call.audio(True, 5)
    assert call.kinds() == [HoldFrame]
    call.hypothesis("wait stop")
    await eventually(lambda: call.kinds() == [HoldFrame, InterruptionFrame])
    assert call.turns.active_turn is None and count("real") == real + 1

    await call.stop()
    turn = await call.final("wait stop")
    assert call.down.frames[-1] is turn and [r.text for r in call.reports] == ["wait stop"]


async def test_words_still_unsure_at_the_end_of_the_sound_wait_for_the_final_transcript() -> None:
    call = Call()
    await call.start()
    call.audio(True, 15)
    call.hypothesis("way")
    call.audio(False, QUIET_FRAMES + 5)
    await call.stop()
    assert call.kinds() == [HoldFrame], "held until the final transcript says what the word was"
    turn = await call.final("wait")
    assert call.kinds() == [HoldFrame, InterruptionFrame, UserTurnFrame], "the interruption comes first"
    assert call.down.frames[-1] is turn


async def test_a_sound_lasting_the_min_speech_time_cuts_the_reply_without_words() -> None:
    call = Call()
    await call.start()
    call.audio(True, 31)  # 60 ms before the VAD's start, 620 ms after it: 680 ms
    assert call.kinds() == [HoldFrame]
    call.audio(False, QUIET_FRAMES - 1)  # a gap inside the sound is part of it
    call.audio(True)
    await eventually(lambda: call.kinds() == [HoldFrame, InterruptionFrame])
    await call.stop()
    assert await call.final("") is None
    assert call.kinds() == [HoldFrame, InterruptionFrame] and [r.text for r in call.reports] == [""]


async def test_a_sound_after_the_reply_resumed_holds_it_again_and_is_measured_afresh() -> None:
    call = Call()
    await call.start()
    call.audio(True, 25)  # 500 ms: a long "mm-hmm"
    call.audio(False, QUIET_FRAMES)
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame])
    call.audio(True, 25)  # another 500 ms: 1.3 s since the first began, but two short sounds
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame, HoldFrame])
    call.audio(False, QUIET_FRAMES)
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame, HoldFrame, ResumeFrame])


async def test_a_hold_waiting_for_a_final_transcript_that_never_comes_ends_by_itself() -> None:
    call = Call(hold_limit_s=0.05)
    resumed = count("resumed")
    await call.start()
    call.audio(True, 10)
    call.hypothesis("way")
    call.audio(False, QUIET_FRAMES)
    await call.stop()  # the recognizer fails: no final transcript
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame])
    assert count("resumed") == resumed + 1


async def test_once_the_reply_is_over_an_acknowledgement_is_an_answer_and_a_hum_is_still_dropped() -> None:
    call = Call()
    await call.start()
    call.audio(True, 10)
    call.audio(False, QUIET_FRAMES)
    await eventually(lambda: call.kinds() == [HoldFrame, ResumeFrame])
    await call.stop()
    call.end_turn(1)  # the rest of it played
    turn = await call.final("yes")
    assert call.down.frames[-1] is turn, "a yes to the reply's last question is the next turn"

    call.bus.publish(TurnStartedFrame(UserTurnFrame("yes", 2)))
    await call.start()
    call.audio(True, 10)
    call.audio(False, QUIET_FRAMES)
    await call.stop()
    call.end_turn(2)
    assert await call.final("uh", utterance=2) is not None
    assert call.down.of(UserTurnFrame) == [turn], "a hum is never a turn"
    assert [r.text for r in call.reports] == ["yes", ""]


async def test_immediate_cuts_the_reply_at_speech_start() -> None:
    call = Call("immediate")
    await call.start()
    assert call.kinds() == [InterruptionFrame] and not call.up.frames
    assert call.turns.active_turn is None


async def test_the_clients_interrupt_cuts_a_held_reply_at_once() -> None:
    call = Call()
    await call.start()
    await call.gate.queue_frame(InterruptRequestFrame())
    assert call.kinds() == [HoldFrame, InterruptionFrame]
    call.audio(False, QUIET_FRAMES)
    await call.stop()
    turn = await call.final("what time is it")
    assert call.kinds() == [HoldFrame, InterruptionFrame, UserTurnFrame], "no resume of an ended turn"
    assert call.down.frames[-1] is turn


async def test_sound_with_no_reply_in_flight_is_not_held() -> None:
    call = Call()
    call.end_turn(1)
    await call.start()
    call.audio(True, 50)
    assert not call.down.frames and not call.up.frames
