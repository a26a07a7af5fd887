"""A voice client in its own process, so a test can kill -9 it mid-call: no WebSocket close, no
DTLS close_notify, no RTCP BYE; the agent only sees TCP reset by the kernel and media stopping.

`python -m tests.reliability.vanishing_client URL` prints the session id once a turn is done,
then keeps the call up (bounded) until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from voice_agent.testing.client import VoiceClient

HOLD_S = 120.0


async def main(url: str) -> None:
    client = VoiceClient(url, record=False)
    await client.create_session()
    await client.connect()
    await client.wait_media(timeout=30)
    await client.send({"type": "text", "text": "remember the word banana"})
    await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
    print(client.session["id"], flush=True)
    await asyncio.sleep(HOLD_S)  # the call stays up until the test kills this process


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
