"""flite in-process through its C library: no process spawn per sentence.

Spawning `flite` costs ~50-80 ms before the first sample (fork/exec, voice load, WAV over a pipe);
the library call itself takes ~20 ms for a short sentence. That difference is most of the offline
pipeline's time to first audio, so the agent synthesizes in-process when Debian's libflite is
present and falls back to the binary otherwise. Calls go to one dedicated thread: ctypes releases
the GIL during the call (the event loop keeps pacing audio), and flite's voice object is not
documented as thread-safe, so one thread also serializes synthesis.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class _CstWave(ctypes.Structure):
    # flite's cst_wave (cst_wave.h); stable across flite 1.4-2.x.
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    ]


class FliteLibrary:
    def __init__(self, lib: ctypes.CDLL, voice: int) -> None:
        self._lib = lib
        self._voice = ctypes.c_void_p(voice)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flite")

    @classmethod
    def load(cls, voice: str = "slt") -> FliteLibrary | None:
        """The library with `voice` registered, or None when libflite is not installed."""
        try:
            lib = ctypes.CDLL("libflite.so.1")
            for dep in ("libflite_usenglish.so.1", "libflite_cmulex.so.1"):
                ctypes.CDLL(dep, mode=ctypes.RTLD_GLOBAL)
            voice_lib = ctypes.CDLL(f"libflite_cmu_us_{voice}.so.1")
        except OSError as exc:
            log.info("libflite not available (%s); using the flite binary", exc)
            return None
        lib.flite_init()
        register = getattr(voice_lib, f"register_cmu_us_{voice}")
        register.restype = ctypes.c_void_p
        register.argtypes = [ctypes.c_char_p]
        handle = register(None)
        if not handle:
            return None
        lib.flite_text_to_wave.restype = ctypes.POINTER(_CstWave)
        lib.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.delete_wave.argtypes = [ctypes.POINTER(_CstWave)]
        return cls(lib, handle)

    def _synthesize(self, text: str) -> tuple[bytes, int]:
        wave = self._lib.flite_text_to_wave(text.encode("utf-8", "replace"), self._voice)
        if not wave:
            raise RuntimeError("flite_text_to_wave returned NULL")
        try:
            w = wave.contents
            if w.num_channels != 1:
                raise RuntimeError(f"flite returned {w.num_channels} channels")
            return ctypes.string_at(w.samples, w.num_samples * 2), int(w.sample_rate)
        finally:
            self._lib.delete_wave(wave)

    async def synthesize(self, text: str) -> tuple[bytes, int]:
        """16-bit mono PCM and its rate."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._synthesize, text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
