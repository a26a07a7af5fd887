"""ElevenLabs streaming TTS: POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_<rate>
with `xi-api-key` and JSON {text, model_id}; the body is raw s16le mono PCM at <rate>, chunked.

The speech is real (flite, resampled to the requested rate), so an end-to-end test can check
that what the caller heard is the reply text.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.providers.fakes.http import HttpFake
from tests.support.speech import synth
from voice_agent.media.audio import PcmResampler

PCM_RATES = {f"pcm_{rate}": rate for rate in (16000, 22050, 24000, 44100, 48000)}
CHUNK_MS = 50


@functools.lru_cache(maxsize=64)
def speech(text: str, rate: int) -> bytes:
    pcm, src = synth(text)
    pcm = pcm[src * 2 * 3 // 10 :]  # synth() leads with 300 ms of silence for callers; TTS does not
    if rate == src:
        return pcm
    r = PcmResampler(src, rate)
    return r.resample(pcm) + r.flush()


class FakeElevenLabs(HttpFake):
    def __init__(self, api_key: str) -> None:
        super().__init__(api_key)
        self.odd_chunks = False  # split chunks at odd byte offsets, as HTTP may

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/text-to-speech/{voice_id}/stream", self.tts_stream)]

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("xi-api-key") == self.api_key

    def error_body(self, status: int) -> dict[str, Any]:
        statuses = {401: "invalid_api_key", 429: "too_many_concurrent_requests", 422: "invalid_request"}
        return {"detail": {"status": statuses.get(status, "internal_error"), "message": "fake error"}}

    async def tts_stream(self, request: web.Request) -> web.StreamResponse:
        rec = await self.record(request)
        rejected, fault = await self.guard(request, rec)
        if rejected is not None:
            return rejected
        if fault is not None and fault.mode == "malformed":  # 200, but not audio
            rec.outcome = "fault"
            return web.json_response({"detail": {"status": "error", "message": "not audio"}})
        body = rec.body or {}
        rate = PCM_RATES.get(request.query.get("output_format", ""))
        if rate is None or not isinstance(body.get("text"), str) or not body["text"].strip():
            return self.reject(rec, 422)
        try:
            pcm = await asyncio.to_thread(speech, body["text"], rate)
        except asyncio.CancelledError:  # the caller went away while the speech was being made
            rec.outcome, rec.ended = "client_closed", time.monotonic()
            raise
        return await self.stream(request, rec, fault, self._chunks(pcm, rate), b"")

    async def _chunks(self, pcm: bytes, rate: int) -> AsyncIterator[bytes]:
        step = rate * 2 * CHUNK_MS // 1000 + (1 if self.odd_chunks else 0)
        for i in range(0, len(pcm), step):
            yield pcm[i : i + step]
