"""The pipeline's sink: TTS audio into the agent's outbound track (media/track.py)."""

from __future__ import annotations

from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.pipeline.frames import (
    BotStoppedSpeakingFrame,
    DataFrame,
    Frame,
    HoldFrame,
    InterruptionFrame,
    PlayedFrame,
    ResumeFrame,
    SystemFrame,
    TTSAudioFrame,
    TurnEndedFrame,
)
from voice_agent.pipeline.processor import Direction, FrameProcessor


class AudioOutputProcessor(FrameProcessor):
    """Sink stage: TTS audio into the track; an interruption empties the track immediately, a hold
    pauses it where it is (until a resume, or the turn's end: any end of a turn lifts its hold).

    The track's clock reports what it played through this stage, as frames on the pipeline's
    channel. As an observer, the stage closes a turn's audio when the turn ends (a text-only reply
    delivered, a completed or interrupted one): nothing of it may play afterwards.
    """

    name = "output"
    frame_types = (TurnEndedFrame,)

    def __init__(self, track: AIGeneratedAudioTrack) -> None:
        super().__init__()
        self.track = track
        self.bind(track)

    def bind(self, track: AIGeneratedAudioTrack) -> None:
        self.track = track
        track.on_played = self._played
        track.on_idle = self._idle

    def _played(self, turn: int, index: int, nbytes: int) -> None:
        self.report(PlayedFrame(turn, index, nbytes))

    def _idle(self, turn: int) -> None:
        self.report(BotStoppedSpeakingFrame(turn))

    def on_frame(self, frame: Frame) -> None:
        assert isinstance(frame, TurnEndedFrame)
        self.track.interrupt(frame.turn + 1)

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, InterruptionFrame):
            self.track.interrupt(frame.turn + 1)
        elif isinstance(frame, HoldFrame):
            self.track.hold(frame.turn)
        elif isinstance(frame, ResumeFrame):
            self.track.resume(frame.turn)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, TTSAudioFrame) and frame.pcm:
            self.track.enqueue(frame.turn, frame.index, frame.pcm)
