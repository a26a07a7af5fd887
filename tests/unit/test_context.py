"""Sentence splitting for early TTS, history budget, and what an interrupted reply leaves behind."""

from __future__ import annotations

import pytest

from voice_agent.pipeline.context import Conversation, SentenceSplitter, TurnPlayback, split_sentences
from voice_agent.protocol.sessions import Message


def test_sentences_are_released_as_soon_as_they_end() -> None:
    s = SentenceSplitter()
    assert s.feed("Hello the") == []
    assert s.feed("re. How a") == ["Hello there."]
    assert s.feed("re you? I am") == ["How are you?"]
    assert s.flush() == ["I am"]
    assert s.flush() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith is in. Come now.", ["Dr. Smith is in.", "Come now."]),
        ("It costs 3.5 dollars. Yes!", ["It costs 3.5 dollars.", "Yes!"]),
        ("Wait... really?! Okay.", ["Wait...", "really?!", "Okay."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("No punctuation at all", ["No punctuation at all"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_history_keeps_system_prompt_and_drops_oldest_whole_exchanges() -> None:
    conv = Conversation([Message(role="system", content="be brief")], max_messages=5)
    for i in range(6):
        conv.add("user", f"q{i}")
        conv.add("assistant", f"a{i}")
    roles = [m.role for m in conv.messages]
    assert roles[0] == "system"
    assert roles[1] == "user", "the window never opens with an orphaned reply"
    assert len(conv.messages) <= 5
    assert conv.messages[-1].content == "a5"


def test_interrupted_turn_remembers_only_what_was_heard() -> None:
    turn = TurnPlayback(1)
    turn.add_sentence(0, "First sentence here.")
    turn.add_sentence(1, "one two three four five six seven eight.")
    turn.add_sentence(2, "Never played.")
    turn.add_audio(0, 1000, last=True)
    turn.add_audio(1, 1000, last=True)
    turn.add_audio(2, 1000, last=True)
    turn.played(0, 1000)
    turn.played(1, 500)
    heard = turn.heard_text()
    assert heard.startswith("First sentence here. one two three four")
    assert "seven" not in heard and "Never" not in heard
    assert heard.endswith("...")
    assert not turn.finished


def test_nothing_played_means_nothing_heard() -> None:
    turn = TurnPlayback(2)
    turn.add_sentence(0, "Hello.")
    turn.add_audio(0, 640, last=True)
    assert turn.heard_text() == ""


def test_first_chunk_of_a_reply_may_end_at_a_clause_so_speech_starts_sooner() -> None:
    s = SentenceSplitter()
    assert s.feed("Once upon a time, three") == ["Once upon a time,"]
    assert s.feed(" ships sailed, far away. Then, they") == ["three ships sailed, far away."]
    assert s.flush() == ["Then, they"]


def test_short_clauses_do_not_split_and_clause_splitting_can_be_off() -> None:
    assert split_sentences("Hi, it is noon. Bye.") == ["Hi, it is noon.", "Bye."]
    s = SentenceSplitter(first_clause_min_words=0)
    assert s.feed("Once upon a time, three ships. ") == ["Once upon a time, three ships."]
