"""Offline LLM role: a small deterministic intent engine that streams its reply word by word.

It answers greetings, time, date, help, thanks/goodbye, "repeat what I said" and a story (a long
reply, handy to try barge-in), and falls back politely. Matching is by keywords on purpose:
offline STT makes small word errors ("but time is it"), and a keyword still carries the intent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime

from voice_agent.protocol.sessions import Message
from voice_agent.providers.base import Served

Clock = Callable[[], datetime]

STORY = (
    "Once upon a time, a small robot lived in a lighthouse by the sea. "
    "Every night it counted the ships that passed and sang to them in a quiet voice. "
    "One stormy evening the light went out, and the robot climbed the long stairs to fix it. "
    "The ships found their way home, and the sailors still tell the story today."
)

_WORD = re.compile(r"[a-z']+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class LocalResponder:
    name = "local"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or (lambda: datetime.now().astimezone())

    def reply(self, messages: Sequence[Message]) -> str:
        users = [m.content for m in messages if m.role == "user"]
        said = users[-1] if users else ""
        w = _words(said)
        now = self._clock()
        if w & {"repeat", "again"}:
            previous = users[-2] if len(users) >= 2 else ""
            return f"You said: {previous}." if previous else "You have not said anything before this."
        if w & {"story", "stories"}:
            return STORY
        if "time" in w:
            return f"It is {now.strftime('%I:%M %p').lstrip('0')}."
        if w & {"date", "day", "today"}:
            return f"Today is {now.strftime('%A, %B')} {now.day}."
        if "help" in w:
            return "You can ask me the time or the date, ask for a story, or ask me to repeat what you said."
        if w & {"hello", "hi", "hey", "morning", "evening", "afternoon"}:
            return "Hello! I am your voice assistant. How can I help you today?"
        if w & {"thanks", "thank"}:
            return "You are welcome."
        if w & {"bye", "goodbye"}:
            return "Goodbye, have a nice day."
        return "Sorry, I can only tell you the time or the date, or tell a story. Please try again."

    async def stream(
        self, messages: Sequence[Message], served: Served | None = None
    ) -> AsyncGenerator[str, None]:
        text = self.reply(messages)
        for i, token in enumerate(re.findall(r"\S+\s*", text)):
            if i:
                await asyncio.sleep(0)  # a real yield point, so cancellation lands between tokens
            yield token

    async def close(self) -> None:
        return None
