"""The end-of-turn decision: which words say the user is finished, and STT's answer when the VAD asks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support import waits
from voice_agent.pipeline.end_of_turn import EndOfTurn, Verdict, judge, judge_pause
from voice_agent.pipeline.frames import (
    ClassifyUtteranceFrame,
    EndOfTurnQueryFrame,
    EndOfTurnWordsFrame,
    Frame,
    HeldTranscriptFrame,
    InputAudioFrame,
    TranscriptionFrame,
    UserPausedFrame,
    UserStoppedSpeakingFrame,
    UserTurnFrame,
)
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.processor import DOWNSTREAM, UPSTREAM, Direction, FrameProcessor
from voice_agent.pipeline.stt import STTProcessor
from voice_agent.providers.base import EndpointCallback, InterimCallback

COMPLETE = [
    "what time is it",
    "What time is it?",
    "please tell me a story",
    "can you book a table for two",
    "my name is John",
    "I would like a coffee",
    "hello",
    "thank you very much",
    "do you know what time it is",  # an auxiliary after a pronoun closes the clause
    "yes I can",
    "where are you from",  # a wh-question may end on its preposition
    "what are you looking for",
    "who are you talking to",
    "what would you like",
    "um what time is it",
    # The offline recognizer's slips: anything but a clear continuation word is an ending.
    "what china's it",
    "please tell me as story",
]
INCOMPLETE = [
    "I would like to",
    "can you tell me the",
    "what is the",
    "I need a ticket to",
    "my name is",
    "could you help me with",
    "I want to go to the",
    "tell me about the",
    "I am calling about my",
    "salt and",
    "I would like",
    "what is the capital of",  # a preposition after a noun wants its object, wh-word or not
    "what would you like to",  # an infinitive's "to", not a stranded preposition
    "what are you going to",
    "I think um",
    "uh",
]


@pytest.mark.parametrize("text", COMPLETE)
def test_a_finished_phrase_is_complete(text: str) -> None:
    assert judge(text) is Verdict.COMPLETE


@pytest.mark.parametrize("text", INCOMPLETE)
def test_a_phrase_ending_in_a_continuation_word_or_a_filler_is_incomplete(text: str) -> None:
    assert judge(text) is Verdict.INCOMPLETE


@pytest.mark.parametrize(
    ("now", "at_voice_end", "verdict"),
    [
        ("tell me about that", "tell me about the", Verdict.INCOMPLETE),  # drifted to an ending
        ("what time is it", "what time is", Verdict.INCOMPLETE),  # the price: the last word came late
        ("I would like to", "I would like", Verdict.INCOMPLETE),
        ("what time is it", "what time is it", Verdict.COMPLETE),
        ("what time is it", None, Verdict.COMPLETE),  # a recognizer without a second look
        (None, "I would like to", Verdict.UNKNOWN),  # no words now: a failure, the fixed silence
        ("what time is a", "what time is", Verdict.UNKNOWN),
    ],
)
def test_either_look_ending_on_a_continuation_word_waits(
    now: str | None, at_voice_end: str | None, verdict: Verdict
) -> None:
    assert judge_pause(now, at_voice_end) is verdict


@pytest.mark.parametrize("text", [None, "", "   ", "?!", "what time is a"])
def test_no_words_or_a_stray_a_leave_it_to_the_fixed_silence(text: str | None) -> None:
    assert judge(text) is Verdict.UNKNOWN


def test_limits_follow_the_verdict_in_frames_of_silence() -> None:
    turn = EndOfTurn("adaptive", fixed_silence_ms=500, min_silence_ms=200, max_silence_ms=1600)
    assert (turn.decide_at, turn.limit) == (10, 80)
    turn.decide("what time is it", 10)
    assert turn.limit == 10
    turn.speech()
    turn.decide("what is the", 10)
    assert turn.limit == 80
    turn.decide(None, 10)
    assert turn.limit == 25
    assert EndOfTurn("fixed", fixed_silence_ms=500).decide_at == 0, "the fixed detector never asks"


def test_a_decision_that_fails_falls_back_to_the_fixed_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str | None) -> Verdict:
        raise RuntimeError("bad input")

    monkeypatch.setattr("voice_agent.pipeline.end_of_turn.judge", broken)
    turn = EndOfTurn("adaptive", fixed_silence_ms=500)
    assert turn.decide("what time is it", 10) is Verdict.UNKNOWN
    assert turn.limit == 25


def test_adaptive_silences_must_leave_room_for_a_decision() -> None:
    with pytest.raises(ValueError, match="min silence < max silence"):
        EndOfTurn("adaptive", min_silence_ms=800, max_silence_ms=800)


# --- STT's answer ---------------------------------------------------------------------------------
class Stream:
    provider = "fake"

    def __init__(self, on_interim: InterimCallback) -> None:
        self.on_interim = on_interim

    async def send(self, pcm: bytes) -> None: ...

    async def finish(self) -> str:
        return ""

    async def aclose(self) -> None: ...


class PartialStream(Stream):
    def __init__(self, on_interim: InterimCallback) -> None:
        super().__init__(on_interim)
        self.words: str | None = "what time is it"
        self.asked = 0

    def partial(self) -> str | None:
        self.asked += 1
        if self.words == "boom":
            raise RuntimeError("decoder gone")
        return self.words


class FakeSTT:
    name = "fake"
    sample_rate = 16000

    def __init__(self, kind: type[Stream]) -> None:
        self.kind = kind
        self.stream: Stream | None = None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def release(self, state: dict[str, Any]) -> None: ...

    async def open_stream(
        self,
        on_interim: InterimCallback,
        state: dict[str, object],
        on_endpoint: EndpointCallback | None = None,
    ) -> Stream:
        self.stream = self.kind(on_interim)
        return self.stream


class Upstream(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[str | None] = []
        self.at_voice_end: list[str | None] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        assert isinstance(frame, EndOfTurnWordsFrame) and direction is UPSTREAM
        self.answers.append(frame.text)
        self.at_voice_end.append(frame.at_voice_end)


async def stt_with(
    kind: type[Stream], at_voice_end: bool = False
) -> tuple[STTProcessor, FakeSTT, Upstream, list[str]]:
    """STT with a fake provider, the stage before it taking the answers, and the interims reported."""
    provider = FakeSTT(kind)
    stt = STTProcessor(provider, words_at_voice_end=at_voice_end)  # type: ignore[arg-type]
    vad = Upstream()
    vad.link(stt)
    bus = FrameBus()
    interims: list[str] = []

    class Interims:
        frame_types = (TranscriptionFrame,)

        def on_frame(self, frame: Frame) -> None:
            assert isinstance(frame, TranscriptionFrame)
            interims.append(frame.text)

    bus.subscribe(Interims())
    stt.attach(bus)
    await stt._open()
    return stt, provider, vad, interims


async def ask(stt: STTProcessor) -> None:
    await stt.on_system(EndOfTurnQueryFrame(), DOWNSTREAM)


async def audio(stt: STTProcessor, *voiced: bool) -> None:
    for v in voiced:
        await stt.process(InputAudioFrame(b"", voiced=v))


async def test_the_words_now_and_as_the_voice_ended_go_up_and_the_newest_are_reported() -> None:
    """The decoder's later thoughts may drift towards an ending ("to" heard as "ten" once it hears
    silence): the VAD gets both looks, the client and a draft the newest."""
    stt, provider, vad, interims = await stt_with(PartialStream, at_voice_end=True)
    stream = provider.stream
    assert isinstance(stream, PartialStream)
    await audio(stt, True, False)
    assert stream.asked == 0, "not asked before it has shown words: it may not be decoding yet"
    stream.on_interim("I would")
    stream.words = "I would like to"
    await audio(stt, True, True, False)  # the first silent frame after voice takes the words
    stream.words = "I would like ten"
    await audio(stt, False, False)
    await ask(stt)
    assert (vad.answers, vad.at_voice_end) == (["I would like ten"], ["I would like to"])
    assert interims == ["I would", "I would like ten"]
    stream.on_interim("I would like tent")  # interims of a stream that tells its own are not news
    await audio(stt, False)
    assert vad.answers == ["I would like ten"]
    await audio(stt, True, False)
    stream.words = "boom"
    await ask(stt)
    assert vad.answers[-1] is None, "a stream that fails to tell leaves it to the fixed silence"


async def test_the_fixed_detector_takes_no_words_as_the_voice_ends() -> None:
    stt, provider, vad, _ = await stt_with(PartialStream)
    assert isinstance(provider.stream, PartialStream)
    await audio(stt, True, False)
    provider.stream.words = "what time is it now"
    await ask(stt)
    assert vad.answers == ["what time is it now"]


async def test_no_stream_no_words() -> None:
    stt, _, vad, _ = await stt_with(PartialStream)
    await stt.on_system(UserStoppedSpeakingFrame(at=0.0), DOWNSTREAM)  # the stream goes to be finalized
    await ask(stt)
    assert vad.answers == [None]


async def test_without_its_own_hypothesis_a_stream_is_answered_for_by_interims() -> None:
    """A cloud recognizer's interim trails the audio: newer ones in the pause go up with the next
    silent frame, once each, and speech again ends that."""
    stt, provider, vad, _ = await stt_with(Stream, at_voice_end=True)
    assert provider.stream is not None
    provider.stream.on_interim("I would")
    await audio(stt, True, False)
    assert vad.answers == [], "nobody asked: interims stay reports"
    await ask(stt)
    provider.stream.on_interim("I would like to book")
    await audio(stt, False, False)
    assert vad.answers == ["I would", "I would like to book"]
    await audio(stt, True)
    provider.stream.on_interim("I would like to book a table")
    await audio(stt, False)
    assert vad.answers == ["I would", "I would like to book"]


class SlowFinish(PartialStream):
    """Its end of utterance takes until the test says, and hears one word more than its hypothesis."""

    def __init__(self, on_interim: InterimCallback) -> None:
        super().__init__(on_interim)
        self.may_finish = asyncio.Event()
        self.finished = False

    async def finish(self) -> str:
        await self.may_finish.wait()
        self.finished = True
        return f"{self.words} then"


class Turns(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.turns: list[UserTurnFrame] = []
        self.held: list[HeldTranscriptFrame] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        if isinstance(frame, UserTurnFrame):
            self.turns.append(frame)
        elif isinstance(frame, HeldTranscriptFrame):
            self.held.append(frame)


async def test_the_hypothesis_at_the_end_is_the_final_transcript_without_waiting_for_the_decoder() -> None:
    stt, provider, _, _ = await stt_with(SlowFinish, at_voice_end=True)
    after = Turns()
    stt.link(after)
    stream = provider.stream
    assert isinstance(stream, SlowFinish)
    stream.on_interim("what time")
    await audio(stt, True, False)
    await ask(stt)
    stream.words = "what time is it now"
    await audio(stt, False)  # the words it had at the decision are not the last
    await stt.on_system(UserStoppedSpeakingFrame(at=1.0), DOWNSTREAM)
    assert [t.text for t in after.turns] == ["what time is it now"], "its hypothesis over all it heard"
    assert stt.finalizing and not stream.finished, "the stream still finishes, behind the turn"
    stream.may_finish.set()
    await waits.until(lambda: not stt.finalizing, timeout=5.0, interval=0.01)
    assert stream.finished and [t.text for t in after.turns] == ["what time is it now"]


@pytest.mark.parametrize("why", ["held", "no words shown", "no hypothesis"])
async def test_otherwise_the_turn_waits_for_the_final_transcript(why: str) -> None:
    kind = Stream if why == "no hypothesis" else SlowFinish
    stt, provider, _, _ = await stt_with(kind, at_voice_end=True)
    after = Turns()
    stt.link(after)
    stream = provider.stream
    assert stream is not None
    if why != "no words shown":
        stream.on_interim("what time")
    if why == "held":
        await stt.on_system(ClassifyUtteranceFrame(7), DOWNSTREAM)  # its final may be the second look's
    await audio(stt, True, False)
    await stt.on_system(UserStoppedSpeakingFrame(at=1.0), DOWNSTREAM)
    if isinstance(stream, SlowFinish):
        assert after.turns == [] and after.held == []
        stream.may_finish.set()
    await waits.until(lambda: not stt.finalizing, timeout=5.0, interval=0.01)
    final = [h.transcription.text for h in after.held] if why == "held" else [t.text for t in after.turns]
    assert final == (["what time is it then"] if isinstance(stream, SlowFinish) else [])


async def test_a_pause_reports_the_streams_newer_words_for_the_draft_made_on_it() -> None:
    stt, provider, _, interims = await stt_with(PartialStream)
    stream = provider.stream
    assert isinstance(stream, PartialStream)
    await stt.on_system(UserPausedFrame(at=1.0), DOWNSTREAM)
    assert stream.asked == 0 and interims == [], "not asked before it has shown words"
    stream.on_interim("what time")
    await audio(stt, True, False)
    await stt.on_system(UserPausedFrame(at=1.0), DOWNSTREAM)
    assert interims == ["what time", "what time is it"]
    await stt.on_system(ClassifyUtteranceFrame(3), DOWNSTREAM)
    stream.words = "what time is it now"
    await stt.on_system(UserPausedFrame(at=2.0), DOWNSTREAM)
    assert interims == ["what time", "what time is it"], "the gate's utterance: its hypotheses are its cue"
