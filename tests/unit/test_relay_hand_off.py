"""A draining agent hands off the sockets it relays: at a quiet turn boundary, and all of them once
the drain's patience is over (a relayed call that never looks quiet must not hold the agent)."""

from __future__ import annotations

import asyncio
from typing import Any

from voice_agent.pool.relay import EdgeLink, Relay


class Store:
    agent_id = "draining"

    def inbox_of(self, agent_id: str) -> str:
        return f"inbox:{agent_id}"

    async def publish(self, channel: str, message: str) -> int:
        return 1


class Conn:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    def close_soon(self, code: int, reason: str = "") -> None:
        self.closed = code


def edge(relay: Relay, status: str) -> tuple[EdgeLink, Conn]:
    conn = Conn()
    link = EdgeLink(relay, "s-" + status, "owner", conn)  # type: ignore[arg-type]
    relay.edges[link.id] = link
    link.relay_event({"type": "status", "processing": status})
    link.heard_at -= 1.0  # its last event a second ago
    return link, conn


async def test_quiet_sockets_go_first_and_the_rest_once_the_patience_is_over() -> None:
    relay = Relay(Store(), calls=None, max_frame_bytes=65536)  # type: ignore[arg-type]
    _, quiet = edge(relay, "listening")
    _, busy = edge(relay, "speaking")
    assert relay.hand_off_quiet(0.2) == 1
    assert quiet.closed == 1012 and busy.closed is None
    assert relay.hand_off_quiet(0.2, anyway=True) == 1
    assert busy.closed == 1012 and relay.active_edges == 0
    await asyncio.sleep(0)  # the owners' "bye" messages
