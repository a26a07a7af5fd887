"""VAD turn boundaries: start needs a run of voiced frames, end needs the configured silence."""

from __future__ import annotations

from voice_agent.media.audio import FRAME_MS
from voice_agent.pipeline.frames import (
    EndOfTurnRequestFrame,
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
