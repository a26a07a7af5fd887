"""VAD turn boundaries: start needs a run of voiced frames; the end needs the configured silence, or
(adaptive) the silence the words at a short pause call for."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from voice_agent.media.audio import FRAME_MS
from voice_agent.pipeline.end_of_turn import EndOfTurn
from voice_agent.pipeline.frames import (
    EndOfTurnQueryFrame,
    EndOfTurnRequestFrame,
    EndOfTurnWordsFrame,
    Frame,
    InputAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voice_agent.pipeline.processor import DOWNSTREAM, UPSTREAM, Direction, FrameProcessor
from voice_agent.pipeline.vad import VADProcessor

VOICED = b"\x01" * 640
SILENT = b"\x00" * 640


class ScriptedVAD(VADProcessor):
    """Decisions come from the frame itself, so a test states exactly which frames are speech."""

    def is_speech(self, pcm: bytes) -> bool:
        return pcm[0] == 1


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        self.frames.append(frame)

    def kinds(self) -> list[str]:
        return [type(f).__name__ for f in self.frames]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def feed(vad: VADProcessor, clock: Clock, frames: list[bytes]) -> None:
    for pcm in frames:
        clock.t += FRAME_MS / 1000
        await vad.queue_frame(InputAudioFrame(pcm))


def make(start_ms: int = 60, silence_ms: int = 500) -> tuple[ScriptedVAD, Sink, Clock]:
    clock = Clock()
    vad = ScriptedVAD(start_ms=start_ms, end_of_turn_silence_ms=silence_ms, clock=clock)
    sink = Sink()
    vad.link(sink)
    return vad, sink, clock


async def test_a_click_does_not_start_speech() -> None:
    vad, sink, clock = make(start_ms=60)
    await feed(vad, clock, [SILENT] * 5 + [VOICED, VOICED] + [SILENT] * 5 + [VOICED] + [SILENT] * 3)
    assert sink.frames == []
    assert not vad.speaking


async def test_speech_starts_after_start_ms_and_forwards_preroll() -> None:
    vad, sink, clock = make(start_ms=60)
    await feed(vad, clock, [SILENT] * 4 + [VOICED] * 3)
    assert isinstance(sink.frames[0], UserStartedSpeakingFrame)
    audio = [f for f in sink.frames if isinstance(f, InputAudioFrame)]
    assert len(audio) == 7, "the frames before the decision reach STT too"
    # The start is dated to the first voiced frame, not to the decision.
    assert abs(sink.frames[0].at - (clock.t - 2 * FRAME_MS / 1000)) < 1e-9


async def test_end_of_turn_waits_for_the_configured_silence() -> None:
    for silence_ms in (200, 800):
        vad, sink, clock = make(silence_ms=silence_ms)
        await feed(vad, clock, [VOICED] * 10)
        last_voiced = clock.t
        need = silence_ms // FRAME_MS
        await feed(vad, clock, [SILENT] * (need - 1))
        assert not any(isinstance(f, UserStoppedSpeakingFrame) for f in sink.frames), silence_ms
        await feed(vad, clock, [SILENT])
        stop = sink.frames[-1]
        assert isinstance(stop, UserStoppedSpeakingFrame), sink.kinds()
        assert stop.at == last_voiced, "speech end is the last voiced frame, not the timeout"


async def test_a_pause_shorter_than_the_silence_keeps_one_turn() -> None:
    vad, sink, clock = make(silence_ms=300)
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 10 + [VOICED] * 10 + [SILENT] * 15)
    assert sink.kinds().count("UserStartedSpeakingFrame") == 1
    assert sink.kinds().count("UserStoppedSpeakingFrame") == 1


async def test_max_utterance_forces_an_end() -> None:
    clock = Clock()
    vad = ScriptedVAD(max_utterance_s=2.0, clock=clock)
    sink = Sink()
    vad.link(sink)
    await feed(vad, clock, [VOICED] * 150)
    kinds = sink.kinds()
    assert kinds.count("UserStoppedSpeakingFrame") == 1, "3 s of speech, one end at the 2 s cap"
    utterance = kinds[: kinds.index("UserStoppedSpeakingFrame")]
    assert utterance.count("InputAudioFrame") == 2000 // FRAME_MS, "the end comes with the 2 s of audio"


async def test_pause_and_resume_are_announced_before_the_turn_ends() -> None:
    clock = Clock()
    vad = ScriptedVAD(end_of_turn_silence_ms=500, pause_ms=200, clock=clock)
    sink = Sink()
    vad.link(sink)
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 12 + [VOICED] * 5 + [SILENT] * 30)
    kinds = [k for k in sink.kinds() if k != "InputAudioFrame"]
    assert kinds == [
        "UserStartedSpeakingFrame",
        "UserPausedFrame",
        "UserResumedFrame",
        "UserPausedFrame",
        "UserStoppedSpeakingFrame",
    ]


async def test_an_stt_endpoint_ends_the_turn_before_the_silence_runs_out() -> None:
    vad, sink, clock = make(silence_ms=2000)
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 3)
    last_voiced = clock.t - 3 * FRAME_MS / 1000
    await vad.queue_frame(EndOfTurnRequestFrame(), UPSTREAM)  # what STT sends when its provider endpoints
    await feed(vad, clock, [SILENT])
    stop = sink.frames[-1]
    assert isinstance(stop, UserStoppedSpeakingFrame)
    assert abs(stop.at - last_voiced) < 1e-9
    await vad.queue_frame(EndOfTurnRequestFrame(), UPSTREAM)  # not speaking: nothing to end, none kept
    await feed(vad, clock, [VOICED] * 3 + [SILENT] * 5)
    assert vad.speaking and sink.kinds().count("UserStoppedSpeakingFrame") == 1


# --- adaptive end of turn ----------------------------------------------------------------------
class WordsSink(Sink):
    """Stands in for STT: answers each EndOfTurnQueryFrame with the words of the moment (None: no
    answer at all, as when no stream is open) and those as the voice ended."""

    def __init__(self, vad: VADProcessor, words: str | None, at_voice_end: str | None = None) -> None:
        super().__init__()
        self.vad = vad
        self.words = words
        self.at_voice_end = at_voice_end

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        await super().queue_frame(frame, direction)
        if isinstance(frame, EndOfTurnQueryFrame) and self.words is not None:
            answer = EndOfTurnWordsFrame(self.words, at_voice_end=self.at_voice_end)
            await self.vad.queue_frame(answer, UPSTREAM)


def adaptive(
    words: str | None, fixed_ms: int = 500, min_ms: int = 200, max_ms: int = 1600, pause_ms: int = 0
) -> tuple[ScriptedVAD, WordsSink, Clock]:
    clock = Clock()
    vad = ScriptedVAD(
        clock=clock, pause_ms=pause_ms, end_of_turn=EndOfTurn("adaptive", fixed_ms, min_ms, max_ms)
    )
    sink = WordsSink(vad, words)
    vad.link(sink)
    return vad, sink, clock


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def silence_until_the_end(vad: VADProcessor, sink: Sink, clock: Clock, limit: int = 400) -> int:
    """Silent frames fed until the turn ends (at most `limit`): how many it took."""
    for n in range(1, limit + 1):
        await feed(vad, clock, [SILENT])
        if isinstance(sink.frames[-1], UserStoppedSpeakingFrame):
            return n
    raise AssertionError(f"no end of turn after {limit} silent frames")


@pytest.mark.parametrize(
    ("words", "frames", "outcome"),
    [
        ("what time is it", 200 // FRAME_MS, "complete"),  # finished: the turn is taken at the pause
        ("I would like to", 1600 // FRAME_MS, "timeout"),  # unfinished: the longest silence ends it
        ("", 500 // FRAME_MS, "fallback"),  # nothing heard to judge by: the fixed silence
        (None, 500 // FRAME_MS, "fallback"),  # no recognizer answered
    ],
)
async def test_the_words_at_the_pause_set_the_silence_that_ends_the_turn(
    words: str | None, frames: int, outcome: str
) -> None:
    vad, sink, clock = adaptive(words)
    before = sample("voice_turn_decisions_total", detector="adaptive", outcome=outcome)
    waited = sample("voice_turn_end_silence_seconds_sum", detector="adaptive")
    await feed(vad, clock, [VOICED] * 10)
    last_voiced = clock.t
    assert await silence_until_the_end(vad, sink, clock) == frames
    stop = sink.frames[-1]
    assert isinstance(stop, UserStoppedSpeakingFrame) and stop.at == last_voiced
    assert sink.kinds().count("EndOfTurnQueryFrame") == 1, "one question per pause"
    assert sample("voice_turn_decisions_total", detector="adaptive", outcome=outcome) == before + 1
    silence_s = sample("voice_turn_end_silence_seconds_sum", detector="adaptive") - waited
    assert silence_s == pytest.approx(frames * FRAME_MS / 1000)


async def test_an_unfinished_phrase_survives_a_long_pause_and_its_end_is_judged_again() -> None:
    vad, sink, clock = adaptive("I would like to")
    incomplete = sample("voice_turn_decisions_total", detector="adaptive", outcome="incomplete")
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * (800 // FRAME_MS) + [VOICED] * 10)
    assert not any(isinstance(f, UserStoppedSpeakingFrame) for f in sink.frames), "cut off at the pause"
    sink.words = "I would like to book a table for two"
    assert await silence_until_the_end(vad, sink, clock) == 200 // FRAME_MS
    assert sink.kinds().count("UserStartedSpeakingFrame") == 1
    assert sink.kinds().count("EndOfTurnQueryFrame") == 2
    assert sample("voice_turn_decisions_total", detector="adaptive", outcome="incomplete") == incomplete + 1


async def test_newer_words_during_the_pause_are_judged_again() -> None:
    """A cloud recognizer's interim lags the audio: its words at the pause may be a word short."""
    vad, sink, clock = adaptive("I would like to")
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 15)
    await vad.queue_frame(EndOfTurnWordsFrame("I would like to book a table"), UPSTREAM)
    await feed(vad, clock, [SILENT])
    assert isinstance(sink.frames[-1], UserStoppedSpeakingFrame), "judged complete: taken at once"
    await vad.queue_frame(EndOfTurnWordsFrame("what time is it"), UPSTREAM)  # not in a pause: ignored
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 5)
    assert vad.speaking


async def test_the_words_as_the_voice_ended_can_hold_the_turn() -> None:
    vad, sink, clock = adaptive("tell me about that")
    sink.at_voice_end = "tell me about the"
    await feed(vad, clock, [VOICED] * 10)
    assert await silence_until_the_end(vad, sink, clock) == 1600 // FRAME_MS


async def test_the_fallback_never_waits_past_the_longest_silence() -> None:
    vad, sink, clock = adaptive(None, fixed_ms=3000, max_ms=1000)
    await feed(vad, clock, [VOICED] * 10)
    assert await silence_until_the_end(vad, sink, clock) == 1000 // FRAME_MS


async def test_the_pause_for_a_draft_still_comes_after_the_words_were_asked_for() -> None:
    """Preemption drafts on the freshest words: the query (STT reports them) precedes the pause."""
    vad, sink, clock = adaptive("what time is it", pause_ms=200)
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * (200 // FRAME_MS))
    kinds = [k for k in sink.kinds() if k != "InputAudioFrame"]
    assert kinds == [
        "UserStartedSpeakingFrame",
        "EndOfTurnQueryFrame",
        "UserPausedFrame",
        "UserStoppedSpeakingFrame",
    ]


async def test_a_provider_endpoint_ends_an_adaptive_turn_and_is_counted_as_the_providers() -> None:
    vad, sink, clock = adaptive("I would like to")
    provider = sample("voice_turn_decisions_total", detector="adaptive", outcome="provider")
    await feed(vad, clock, [VOICED] * 10 + [SILENT] * 15)  # judged unfinished at 200 ms
    await vad.queue_frame(EndOfTurnRequestFrame(), UPSTREAM)
    await feed(vad, clock, [SILENT])
    assert isinstance(sink.frames[-1], UserStoppedSpeakingFrame)
    assert sample("voice_turn_decisions_total", detector="adaptive", outcome="provider") == provider + 1


async def test_the_fixed_detector_never_asks_and_counts_its_turns() -> None:
    vad, sink, clock = make(silence_ms=500)
    timeouts = sample("voice_turn_decisions_total", detector="fixed", outcome="timeout")
    await feed(vad, clock, [VOICED] * 10)
    assert await silence_until_the_end(vad, sink, clock) == 500 // FRAME_MS
    assert "EndOfTurnQueryFrame" not in sink.kinds()
    assert sample("voice_turn_decisions_total", detector="fixed", outcome="timeout") == timeouts + 1


LOUD = b"\x01" + b"\x40" * 639  # voiced (first byte 1), ~-6 dBFS
QUIET_VOICED = b"\x01\x00" * 320  # voiced too, ~-90 dBFS: webrtcvad's hangover over the quiet after a voice


async def test_the_silence_counts_from_the_voices_last_loud_frame_not_the_hangover() -> None:
    vad, sink, clock = make(silence_ms=200)
    await feed(vad, clock, [LOUD] * 10)
    last_loud = clock.t
    await feed(vad, clock, [QUIET_VOICED] * 5 + [SILENT] * 4)
    assert not any(isinstance(f, UserStoppedSpeakingFrame) for f in sink.frames)
    await feed(vad, clock, [SILENT])  # 200 ms after the last loud frame, hangover included
    stop = sink.frames[-1]
    assert isinstance(stop, UserStoppedSpeakingFrame), sink.kinds()
    assert stop.at == stop.loud_at == last_loud
    audio = [f for f in sink.frames if isinstance(f, InputAudioFrame)]
    assert [f.voiced for f in audio[-10:]] == [True] * 5 + [False] * 5, "STT still gets webrtcvad's call"


async def test_webrtcvads_last_voiced_frame_can_still_end_the_voice() -> None:
    clock = Clock()
    vad = ScriptedVAD(end_of_turn_silence_ms=200, clock=clock, end_at_loud=False)
    sink = Sink()
    vad.link(sink)
    await feed(vad, clock, [LOUD] * 10)
    last_loud = clock.t
    await feed(vad, clock, [QUIET_VOICED] * 5)
    last_voiced = clock.t
    await feed(vad, clock, [SILENT] * 10)
    stop = sink.frames[-1]
    assert isinstance(stop, UserStoppedSpeakingFrame), sink.kinds()
    assert stop.at == last_voiced and stop.loud_at == last_loud


async def test_a_quiet_voiced_frame_does_not_resume_a_pause() -> None:
    clock = Clock()
    vad = ScriptedVAD(end_of_turn_silence_ms=500, pause_ms=100, clock=clock)
    sink = Sink()
    vad.link(sink)
    await feed(vad, clock, [LOUD] * 10 + [SILENT] * 6 + [QUIET_VOICED] * 3 + [SILENT] * 20)
    kinds = [k for k in sink.kinds() if k != "InputAudioFrame"]
    assert kinds == ["UserStartedSpeakingFrame", "UserPausedFrame", "UserStoppedSpeakingFrame"]
    assert sum(isinstance(f, InputAudioFrame) for f in sink.frames) == 10 + 25, "ended 500 ms after the voice"
