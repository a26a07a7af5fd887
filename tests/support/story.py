"""A call that asked the agent for its story and is hearing it: where interruption and hold tests start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.support.procs import AgentProcess
from tests.support.speech import synth
from voice_agent.testing.client import VoiceClient


@contextlib.asynccontextmanager
async def story_under_way(
    agent: AgentProcess, **client_options: Any
) -> AsyncIterator[tuple[VoiceClient, dict[str, Any]]]:
    """Yields the call with the `speaking` status once about a second of the story has arrived;
    `client_options` go to the VoiceClient (a playout buffer, the jitter buffer)."""
    client = VoiceClient(agent.url, **client_options)
    try:
        await client.create_session()
        await client.connect()
        await client.wait_media()
        client.say(*synth("please tell me a story"))
        speaking = await client.wait_for(
            lambda e: e["type"] == "status" and e["processing"] == "speaking", timeout=30
        )
        await client.wait_voiced(50, after=speaking["_at"], timeout=15)
        yield client, speaking
    finally:
        await client.close()
