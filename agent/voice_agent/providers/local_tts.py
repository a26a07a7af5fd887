"""Offline TTS with flite (`slt` voice, 16 kHz): in-process through libflite when it is installed
(see flite_lib.py: it saves the process spawn on the time to first audio), else one `flite`
process per sentence, which cancellation kills so an interrupted turn stops costing CPU at once.
flite must write to /dev/stdout opened on a real pipe: event loops such as uvloop give child
processes socketpairs for stdio, which flite cannot open by path, so the pipe is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncGenerator

from voice_agent.media.audio import parse_wav, trim_silence
from voice_agent.providers.base import ProviderError, Served
from voice_agent.providers.flite_lib import FliteLibrary

MAX_CHARS = 2000


class FliteTTS:
    name = "local"
    sample_rate = 16000

    def __init__(self, voice: str = "slt", binary: str = "flite", in_process: bool = True) -> None:
        self._lib = FliteLibrary.load(voice) if in_process else None
        path = shutil.which(binary)
        self._binary = path or binary
        self._voice = voice
        if path is None and self._lib is None:
            raise ProviderError(
                "local-tts", "tts_unavailable", f"{binary} not found on PATH (apt-get install flite)"
            )

    async def synthesize(self, text: str, served: Served | None = None) -> AsyncGenerator[bytes, None]:
        text = " ".join(text.split())[:MAX_CHARS]
        if not text:
            return
        if self._lib is not None:
            try:
                pcm, rate = await self._lib.synthesize(text)
            except RuntimeError as exc:
                raise ProviderError("local-tts", "tts_failed", str(exc)) from None
        else:
            pcm, rate = await self._spawn(text)
        if rate != self.sample_rate:
            raise ProviderError("local-tts", "tts_failed", f"unexpected flite rate {rate}")
        yield trim_silence(pcm, rate)

    async def _spawn(self, text: str) -> tuple[bytes, int]:
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                self._binary,
                "-voice",
                self._voice,
                "-t",
                text,
                "-o",
                "/dev/stdout",
                stdout=write_fd,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            out = await reader.read()
            err = await proc.stderr.read() if proc.stderr is not None else b""
            await proc.wait()
        finally:
            transport.close()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise ProviderError("local-tts", "tts_failed", err.decode(errors="replace").strip()[:200])
        return parse_wav(out)

    async def close(self) -> None:
        if self._lib is not None:
            self._lib.close()
