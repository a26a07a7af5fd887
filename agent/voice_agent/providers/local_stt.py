"""Offline streaming STT with PocketSphinx (its English model ships in the wheel).

A decoder holds ~90 MB of model, so decoders are pooled and lent per utterance rather than kept
per session: idle sessions cost nothing here. Beams are narrowed from the defaults, which cuts
CPU by more than half with the same hypotheses on clear speech, and the second passes (fwdflat,
bestpath) are off so the final result is ready a few ms after the end of speech.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from voice_agent.providers.base import EndpointCallback, InterimCallback

log = logging.getLogger(__name__)

# Streaming needs live cepstral mean normalization (pocketsphinx defaults to batch, which only
# works on whole utterances). The initial mean is measured on clear speech through the Opus path;
# after each utterance the adapted mean is kept per session, since decoders are shared.
CMN_INIT = "45.86,1.61,15.20,14.12,-3.20,3.62,2.59,-2.39,4.18,7.05,2.25,8.35,6.23"
DECODER_CONFIG: dict[str, Any] = {
    "samprate": 16000,
    "cmn": "live",
    "cmninit": CMN_INIT,
    "fwdflat": False,
    "bestpath": False,
    "beam": 1e-40,
    "wbeam": 1e-30,
    "maxhmmpf": 3000,
    "loglevel": "FATAL",
}
INTERIM_EVERY_FRAMES = 10  # 200 ms of audio between interim hypotheses


class DecoderPool:
    def __init__(self, size: int) -> None:
        self._size = size
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        self._created = 0
        self._lock = asyncio.Lock()

    async def prewarm(self, n: int = 1) -> None:
        for _ in range(min(n, self._size)):
            self._free.put_nowait(await self._create())

    async def _create(self) -> Any:
        from pocketsphinx import Decoder

        self._created += 1
        return await asyncio.to_thread(Decoder, **DECODER_CONFIG)

    async def acquire(self) -> Any:
        if self._free.empty():
            async with self._lock:
                if self._free.empty() and self._created < self._size:
                    return await self._create()
        return await self._free.get()

    def release(self, decoder: Any) -> None:
        self._free.put_nowait(decoder)


class PocketSphinxStream:
    provider = "local"

    def __init__(self, pool: DecoderPool, on_interim: InterimCallback, state: dict[str, Any]) -> None:
        self._pool = pool
        self._state = state
        self._on_interim = on_interim
        self._decoder: Any = None
        self._pending = bytearray()
        self._acquire = asyncio.create_task(pool.acquire())
        self._frames = 0
        self._last_interim = ""
        self._closed = False
        self._in_utt = False

    async def _ready(self) -> bool:
        """True once a decoder is ours; audio waits in _pending until then (nothing is lost)."""
        if self._decoder is None:
            if not self._acquire.done():
                return False
            self._begin(self._acquire.result())
        return True

    def _begin(self, decoder: Any) -> None:
        self._decoder = decoder
        decoder.set_cmn(self._state.get("cmn", CMN_INIT))
        decoder.start_utt()
        self._in_utt = True

    async def send(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._pending += pcm
        if not await self._ready():
            return
        self._decoder.process_raw(bytes(self._pending), False, False)
        self._pending.clear()
        self._frames += 1
        if self._frames % INTERIM_EVERY_FRAMES == 0:
            hyp = self._decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            if text and text != self._last_interim:
                self._last_interim = text
                self._on_interim(text)

    def partial(self) -> str | None:
        """The decoder's best path through all the audio sent so far (no decoder yet: None)."""
        if self._closed or self._decoder is None:
            return None
        hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    async def finish(self) -> str:
        if self._closed:
            return ""
        if self._decoder is None:
            self._begin(await self._acquire)
        if self._pending:
            self._decoder.process_raw(bytes(self._pending), False, True)
            self._pending.clear()
        self._decoder.end_utt()
        self._in_utt = False
        self._state["cmn"] = self._decoder.get_cmn(False)
        hyp = self._decoder.hyp()
        text: str = hyp.hypstr if hyp is not None else ""
        await self.aclose()
        return text.strip()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._decoder is not None:
            if self._in_utt:
                self._decoder.end_utt()
                self._in_utt = False
            self._pool.release(self._decoder)
            self._decoder = None
        elif self._acquire.done() and not self._acquire.cancelled():
            self._pool.release(self._acquire.result())
        else:
            self._acquire.cancel()


class PocketSphinxSTT:
    name = "local"
    sample_rate = 16000

    def __init__(self, decoders: int = 2) -> None:
        self._pool = DecoderPool(decoders)

    async def start(self) -> None:
        await self._pool.prewarm(1)

    async def close(self) -> None:
        return None

    async def release(self, state: dict[str, Any]) -> None:
        return None

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> PocketSphinxStream:
        """pocketsphinx has no endpointing of its own: turns end by the local VAD."""
        return PocketSphinxStream(self._pool, on_interim, state)
