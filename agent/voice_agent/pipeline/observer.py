"""What the stages report about a turn; the Pipeline implements it and turns it into events."""

from __future__ import annotations

from typing import Protocol

from voice_agent.models import Message
from voice_agent.pipeline.frames import UserTurnFrame
from voice_agent.providers.base import ProviderError


class TurnObserver(Protocol):
    def history(self) -> list[Message]: ...

    def turn_started(self, frame: UserTurnFrame) -> None: ...

    def llm_text(self, turn: int, text_so_far: str, first_token: bool) -> None: ...

    def sentence(self, turn: int, index: int, text: str) -> None: ...

    def llm_done(self, turn: int, text: str) -> None: ...

    def tts_audio(
        self, turn: int, index: int, nbytes: int, last: bool, first_audio_ms: float | None
    ) -> None: ...

    def provider_error(self, exc: ProviderError, turn: int | None) -> None: ...

    def served(self, turn: int, stage: str, provider: str) -> None:
        """Which provider answered a stage of the turn (differs from the configured one on fallback)."""
        ...
