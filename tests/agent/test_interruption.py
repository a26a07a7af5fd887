"""Interruption classification over real WebRTC: an "okay" or a cough while the agent tells a story
pauses it, and the story plays on to its end; "wait, stop" cuts it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.voices import cough
from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import synth
from tests.support.story import story_under_way
from voice_agent.providers.local_llm import STORY
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

RATE = 16000
# Frames already in flight when the agent stops, as in test_barge_in.py.
IN_FLIGHT_S = 0.5


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s="1") as proc:
        yield proc


async def story_over(client: VoiceClient, speaking: dict[str, Any], timeout: float) -> float:
    """When the agent went back to listening: the story played out, or was cut."""
    listening = await client.wait_for(
        lambda e: e["type"] == "status" and e["processing"] == "listening" and e["_at"] > speaking["_at"],
        timeout=timeout,
    )
    return float(listening["_at"])


async def history(agent: AgentProcess, session_id: str) -> list[dict[str, Any]]:
    """The conversation as the agent keeps it, from the `session` event a new socket gets."""
    reader = VoiceClient(agent.url)
    try:
        await reader.connect(session_id, negotiate=False)
        event = await reader.wait_for(lambda e: e["type"] == "session")
        return list(event["session"]["history"])
    finally:
        await reader.close()


async def test_an_okay_and_a_cough_pause_the_story_which_plays_on_to_its_end(agent: AgentProcess) -> None:
    before = await scrape(agent.url)
    async with story_under_way(agent) as (client, speaking):
        okay = client.say(*synth("okay"))
        okay_until = await client.speech_ended(okay)
        await client.wait_voiced(50, after=okay_until, timeout=15)  # the story goes on
        noise = client.say(bytes(RATE * 2 // 5) + cough(300), RATE)
        noise_until = await client.speech_ended(noise)

        done = await story_over(client, speaking, timeout=60)
        assert done - noise_until > 3.0, "the story ended long after the cough: it was not cut"
        assert client.recording.voiced_frames_after(noise_until + IN_FLIGHT_S) > 100
        finals = [e for e in client.events if e["type"] == "transcript" and e["final"]]
        assert [e["text"] for e in finals if e["_at"] > speaking["_at"]] == ["", ""], "neither is a turn"
        metrics = [e for e in client.events if e["type"] == "metrics" and e["_at"] > speaking["_at"]]
        assert metrics, "the story's turn completed (a cut turn reports no metrics)"

    messages = await history(agent, client.session["id"])
    assert [(m["role"], m["content"], m.get("interrupted", False)) for m in messages] == [
        ("user", messages[0]["content"], False),
        ("assistant", STORY, False),
    ], "the story is remembered whole; the okay and the cough are not turns"
    after = await scrape(agent.url)
    keys = {kind: f'voice_interruptions_total{{kind="{kind}"}}' for kind in ("real", "false", "resumed")}
    grew = {kind: after[key] - before[key] for kind, key in keys.items()}
    assert grew == {"real": 0, "false": 2, "resumed": 2}, grew


async def test_wait_stop_over_the_story_stops_it(agent: AgentProcess) -> None:
    async with story_under_way(agent) as (client, speaking):
        stop = client.say(*synth("wait, stop"))
        cut = await story_over(client, speaking, timeout=10)
        spoken_until = await client.speech_ended(stop)
        leaked = [f for f in client.recording.frames if cut + IN_FLIGHT_S <= f.at < spoken_until and f.voiced]
        assert not leaked, f"{len(leaked)} voiced frames of the story played after the interruption"
        final = await client.wait_for(
            lambda e: e["type"] == "transcript" and e["final"] and e["_at"] > cut, timeout=15
        )
        assert {"wait", "stop"} & set(final["text"].split()), final

    messages = await history(agent, client.session["id"])
    story, said = messages[1], messages[2]
    assert story["role"] == "assistant" and story["interrupted"] and len(story["content"]) < len(STORY)
    assert said["role"] == "user" and {"wait", "stop"} & set(said["content"].split()), "a turn of its own"


@pytest.fixture(scope="module")
def immediate_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("immediate"), voice_interruption="immediate") as proc:
        yield proc


async def test_with_immediate_interruption_an_okay_cuts_the_story(immediate_agent: AgentProcess) -> None:
    async with story_under_way(immediate_agent) as (client, speaking):
        client.say(*synth("okay"))
        await story_over(client, speaking, timeout=10)
    story = (await history(immediate_agent, client.session["id"]))[1]
    assert story["role"] == "assistant" and story["interrupted"], story
