"""The three fakes in a process of their own, for benchmarks: the client under measurement then
shares no interpreter (GIL) and no event loop with them, as with a real remote service.

Prints one JSON line with the fakes' URLs and a control URL, then serves until stdin closes.
Control: GET /records (what each fake saw, with its own timings), POST /config {"chunk_delay_s"}.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import Any

from aiohttp import web

from tests.providers.conftest import DEEPGRAM_KEY, ELEVENLABS_KEY, GROQ_KEY
from tests.providers.fakes.chat import FakeChat
from tests.providers.fakes.deepgram import FakeDeepgram
from tests.providers.fakes.elevenlabs import FakeElevenLabs
from tests.support.procs import free_port


def timings(records: list[Any]) -> list[dict[str, Any]]:
    keep = ("path", "status", "started", "first_sent", "sent", "ended", "outcome", "audio_bytes")
    return [{k: v for k, v in dataclasses.asdict(r).items() if k in keep} for r in records]


async def serve(reply: str) -> None:
    deepgram = FakeDeepgram(DEEPGRAM_KEY)
    chat = FakeChat(GROQ_KEY, lambda _: reply)
    elevenlabs = FakeElevenLabs(ELEVENLABS_KEY)
    for fake in (deepgram, chat, elevenlabs):
        await fake.start()

    async def records(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "chat": timings(chat.records),
                "elevenlabs": timings(elevenlabs.records),
                "deepgram": timings(deepgram.records),
                "utterances": deepgram.utterances,
            }
        )

    async def config(request: web.Request) -> web.Response:
        body = await request.json()
        chat.chunk_delay_s = elevenlabs.chunk_delay_s = float(body.get("chunk_delay_s", 0.0))
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes([web.get("/records", records), web.post("/config", config)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    control = free_port()
    await web.TCPSite(runner, "127.0.0.1", control).start()
    urls = {"deepgram": deepgram.url, "chat": chat.url, "elevenlabs": elevenlabs.url}
    print(json.dumps(urls | {"control": f"http://127.0.0.1:{control}"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
    await runner.cleanup()
    for fake in (deepgram, chat, elevenlabs):
        await fake.stop()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1] if len(sys.argv) > 1 else "Hello."))
