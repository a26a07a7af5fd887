"""The conversation as the user experienced it: their words when a turn starts, and the reply as it
reached them when it ends (an interrupted one as heard, marked so the LLM knows it was cut off).

An observer; `on_history` hands each new history to the call, which persists it.
"""

from __future__ import annotations

from collections.abc import Callable

from voice_agent.pipeline.context import Conversation
from voice_agent.pipeline.frames import Frame, TurnEndedFrame, TurnStartedFrame
from voice_agent.protocol.sessions import Message

HistorySink = Callable[[list[Message]], None]


class HistoryRecorder:
    frame_types = (TurnStartedFrame, TurnEndedFrame)

    def __init__(self, conversation: Conversation, on_history: HistorySink | None) -> None:
        self._conversation = conversation
        self._on_history = on_history

    def on_frame(self, frame: Frame) -> None:
        match frame:
            case TurnStartedFrame(user=user):
                self._conversation.add("user", user.text)
                self._changed()
            case TurnEndedFrame(text=text, interrupted=interrupted) if text:
                self._conversation.add("assistant", text, interrupted=interrupted)
                self._changed()

    def _changed(self) -> None:
        if self._on_history is not None:
            self._on_history(list(self._conversation.messages))
