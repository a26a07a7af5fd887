"""The client hears of a hold, a resume and a cut the moment the barge-in gate decides them."""

from __future__ import annotations

from typing import Any

from voice_agent.pipeline.client_events import ClientEvents
from voice_agent.pipeline.frames import HoldFrame, InterruptionFrame, ResumeFrame, TurnEndedFrame
from voice_agent.pipeline.observer import FrameBus
from voice_agent.pipeline.turns import TurnTracker
from voice_agent.protocol.signaling import PlaybackEvent, parse_event


def events() -> tuple[ClientEvents, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    return ClientEvents(sent.append, TurnTracker(FrameBus())), sent


def playback(sent: list[dict[str, Any]]) -> list[tuple[str, int]]:
    parsed = [parse_event(e) for e in sent if e["type"] == "playback"]
    return [(p.state, p.turn) for p in parsed if isinstance(p, PlaybackEvent)]


def test_hold_resume_and_cut_each_reach_the_client_once() -> None:
    client, sent = events()
    client.on_frame(HoldFrame(2))
    client.on_frame(ResumeFrame(2))
    client.on_frame(ResumeFrame(2))  # nothing held any more
    client.on_frame(HoldFrame(2))
    client.on_frame(InterruptionFrame(2))
    client.on_frame(TurnEndedFrame(2, "Once upon", interrupted=True))
    assert playback(sent) == [("held", 2), ("resumed", 2), ("held", 2), ("cut", 2)]


def test_a_turn_that_ends_while_held_lets_the_client_play_again() -> None:
    client, sent = events()
    client.on_frame(HoldFrame(4))
    client.on_frame(TurnEndedFrame(3, "an older turn", interrupted=False))
    assert playback(sent) == [("held", 4)]
    client.on_frame(TurnEndedFrame(4, "the reply", interrupted=False))
    assert playback(sent) == [("held", 4), ("resumed", 4)]
