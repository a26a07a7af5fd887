"""The pipeline's one channel: what stages and observers may rely on."""

from __future__ import annotations

from voice_agent.pipeline.frames import (
    EndOfTurnRequestFrame,
    Frame,
    InputAudioFrame,
    TranscriptionFrame,
    TurnEndedFrame,
    TurnMetrics,
    TurnMetricsFrame,
)
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.processor import DOWNSTREAM, UPSTREAM, Direction, FrameProcessor


class Recorder:
    def __init__(self, name: str, log: list[str], *types: type[Frame]) -> None:
        self.name, self.log, self.frame_types = name, log, types

    def on_frame(self, frame: Frame) -> None:
        self.log.append(f"{self.name}:{type(frame).__name__}")


class Deriving(Recorder):
    """Turns a turn's end into its metrics, as the metrics observer does."""

    def __init__(self, bus: FrameBus, log: list[str]) -> None:
        super().__init__("derive", log, TurnEndedFrame)
        self.bus = bus

    def on_frame(self, frame: Frame) -> None:
        super().on_frame(frame)
        assert isinstance(frame, TurnEndedFrame)
        self.bus.publish(TurnMetricsFrame(frame.turn, TurnMetrics()))


class Stage(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[str, Direction]] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        self.got.append((type(frame).__name__, direction))
        await super().queue_frame(frame, direction)


async def test_observers_see_each_frame_once_and_reports_reach_no_stage() -> None:
    log: list[str] = []
    bus = FrameBus()
    bus.subscribe(Recorder("obs", log, InputAudioFrame, TranscriptionFrame, EndOfTurnRequestFrame))
    a, b, c = Stage(), Stage(), Stage()
    a.link(b).link(c)
    for stage in (a, b, c):
        stage.attach(bus)

    await a.push(InputAudioFrame(b"\x00" * 640))
    assert c.got == [("InputAudioFrame", DOWNSTREAM)], "passed along by b"
    assert log == ["obs:InputAudioFrame"], "b forwards what a made: observed once"

    b.report(TranscriptionFrame("hi", final=False))
    assert log[-1] == "obs:TranscriptionFrame" and len(c.got) == 1, "a report is for observers only"

    await c.push(EndOfTurnRequestFrame(), UPSTREAM)
    assert a.got == [("EndOfTurnRequestFrame", UPSTREAM)]


def test_a_derived_frame_is_handed_out_at_once_in_subscription_order() -> None:
    log: list[str] = []
    bus = FrameBus()
    bus.subscribe(Recorder("before", log, TurnEndedFrame, TurnMetricsFrame))
    bus.subscribe(Deriving(bus, log))
    bus.subscribe(Recorder("after", log, TurnEndedFrame, TurnMetricsFrame))
    bus.publish(TurnEndedFrame(1, "hello", interrupted=False))
    assert log == [
        "before:TurnEndedFrame",
        "derive:TurnEndedFrame",
        "before:TurnMetricsFrame",
        "after:TurnMetricsFrame",  # after the deriving observer: the derived frame comes first
        "after:TurnEndedFrame",
    ]
