"""Conversation state shared by the stages: history with a budget, sentence splitting, and the
per-turn record of what was actually played (so an interrupted reply is remembered as heard)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from voice_agent.protocol.sessions import Message

# A sentence ends at . ! ? (or a run of them, optionally closed by a quote/bracket) followed by
# whitespace. Abbreviations and decimals must not split: "Dr. Smith", "e.g. this", "3.5".
_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "approx",
        "a.m",
        "p.m",
    }
)
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+")
MIN_SENTENCE_CHARS = 2


_CLAUSE = re.compile(r"[,;:]\s+")
FIRST_CLAUSE_MIN_WORDS = 4


class SentenceSplitter:
    """Incremental: feed tokens, get complete sentences as soon as their end is certain.

    The first chunk of a reply may end at a clause (", ; :") once it has a few words: TTS time
    grows with length, and the first chunk is what the user waits for; later sentences are
    synthesized while earlier ones play, so they keep whole-sentence prosody.
    """

    def __init__(self, first_clause_min_words: int = FIRST_CLAUSE_MIN_WORDS) -> None:
        self._buf = ""
        self._first_clause_min_words = first_clause_min_words
        self._emitted = False

    def feed(self, token: str) -> list[str]:
        out = self._feed(token)
        self._emitted = self._emitted or bool(out)
        return out

    def _first_clause(self, limit: int) -> list[str]:
        for m in _CLAUSE.finditer(self._buf, 0, limit):
            head = self._buf[: m.end()].strip()
            if len(head.split()) >= self._first_clause_min_words:
                self._buf = self._buf[m.end() :]
                return [head]
        return []

    def _feed(self, token: str) -> list[str]:
        self._buf += token
        out: list[str] = []
        if not self._emitted and self._first_clause_min_words > 0:
            sentence_end = _BOUNDARY.search(self._buf)
            out = self._first_clause(len(self._buf) if sentence_end is None else sentence_end.start())
            self._emitted = bool(out)
        start = 0
        for m in _BOUNDARY.finditer(self._buf):
            candidate = self._buf[start : m.end()].strip()
            last_word = candidate.rstrip(".!?\"')]").rsplit(maxsplit=1)[-1].lower() if candidate else ""
            if m.group().startswith(".") and last_word in _ABBREVIATIONS:
                continue
            if len(candidate) >= MIN_SENTENCE_CHARS:
                out.append(candidate)
                start = m.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def split_sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()


class Conversation:
    """History sent to the LLM, trimmed oldest-first to a message budget (system prompt kept)."""

    def __init__(self, history: list[Message] | None = None, max_messages: int = 24) -> None:
        self.max_messages = max_messages
        self.messages: list[Message] = list(history or [])
        self._trim()

    def add(self, role: str, content: str, interrupted: bool = False) -> None:
        self.messages.append(Message(role=role, content=content, interrupted=interrupted))  # type: ignore[arg-type]
        self._trim()

    def _trim(self) -> None:
        system = [m for m in self.messages if m.role == "system"]
        rest = [m for m in self.messages if m.role != "system"]
        budget = max(self.max_messages - len(system), 1)
        if len(rest) > budget:
            rest = rest[-budget:]
            # Never start the window with an assistant reply whose question was cut away.
            while rest and rest[0].role == "assistant":
                rest.pop(0)
        self.messages = system + rest


@dataclass
class SentencePlayback:
    text: str
    total_bytes: int = 0
    played_bytes: int = 0
    synthesized: bool = False


@dataclass
class TurnPlayback:
    """What of a turn's reply reached the user; the turn tracker fills it from what the output
    track reports as it plays."""

    turn: int
    sentences: dict[int, SentencePlayback] = field(default_factory=dict)
    llm_done: bool = False

    def add_sentence(self, index: int, text: str) -> None:
        self.sentences.setdefault(index, SentencePlayback(text))

    def add_audio(self, index: int, nbytes: int, last: bool) -> None:
        s = self.sentences.setdefault(index, SentencePlayback(""))
        s.total_bytes += nbytes
        s.synthesized = s.synthesized or last

    def played(self, index: int, nbytes: int) -> None:
        if index in self.sentences:
            self.sentences[index].played_bytes += nbytes

    @property
    def finished(self) -> bool:
        return self.llm_done and all(
            s.synthesized and s.played_bytes >= s.total_bytes for s in self.sentences.values()
        )

    def heard_text(self) -> str:
        """Sentences played in full, plus the played share of the words of a partial one."""
        parts: list[str] = []
        for idx in sorted(self.sentences):
            s = self.sentences[idx]
            if s.total_bytes == 0 or s.played_bytes == 0:
                break
            if s.synthesized and s.played_bytes >= s.total_bytes:
                parts.append(s.text)
                continue
            words = s.text.split()
            share = s.played_bytes / s.total_bytes
            n = int(len(words) * share)
            if n:
                parts.append(" ".join(words[:n]) + "...")
            break
        return " ".join(parts)

    def full_text(self) -> str:
        return " ".join(self.sentences[i].text for i in sorted(self.sentences))
