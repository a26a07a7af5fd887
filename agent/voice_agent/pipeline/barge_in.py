"""Barge-in gate, between STT and LLM: speech (or the client's interrupt) while a turn is in flight
becomes an InterruptionFrame for that turn, which overtakes all queued data on its way to the track.

The user-side frames end here; their facts reached the observers when the VAD pushed them.
"""

from __future__ import annotations

from voice_agent.pipeline.frames import (
    InterruptionFrame,
    InterruptRequestFrame,
    SystemFrame,
    UserPausedFrame,
    UserResumedFrame,
    UserStartedSpeakingFrame,
)
from voice_agent.pipeline.processor import Direction, FrameProcessor
from voice_agent.pipeline.turns import TurnTracker


class BargeInGate(FrameProcessor):
    name = "barge-in"

    def __init__(self, turns: TurnTracker) -> None:
        super().__init__()
        self._turns = turns

    async def on_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, UserStartedSpeakingFrame | InterruptRequestFrame):
            turn = self._turns.active_turn
            if turn is not None:
                await self.push(InterruptionFrame(turn))
        elif not isinstance(frame, UserPausedFrame | UserResumedFrame):
            await self.forward(frame, direction)
