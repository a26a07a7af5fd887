"""libopus called directly for what the agent hears: decoding at the pipeline's rate, with real
packet-loss concealment and in-band FEC.

aiortc decodes through FFmpeg at 48 kHz stereo and cannot conceal a lost packet (FFmpeg takes an
empty packet as end of stream), so a loss was either a gap or a guess. libopus itself repairs
losses: decoding "nothing" extrapolates the voice (PLC), and decoding the *next* packet's LBRR
data recovers the lost one from the redundancy that WebRTC senders add under loss (in-band FEC).
It also decodes straight to 16 kHz mono, which makes the resampler on this path unnecessary.

The library is the one PyAV's wheel bundles (a locked dependency), else the system's libopus (the
agent image installs it). Where neither loads, calls still work: `usable()` says so once, and the
peer lets aiortc decode instead (FFmpeg's decoder, no FEC repair), counted in
`voice_opus_fallbacks_total` (docs/api.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os

log = logging.getLogger(__name__)

_MAX_FRAME_MS = 120  # the longest Opus packet
OPUS_OK = 0
_warned = False


class OpusError(Exception):
    """libopus refused a packet (corrupt or not Opus) or could not be loaded."""


@functools.cache
def libopus() -> ctypes.CDLL:
    import av

    bundled = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs", "libopus*.so*")
    candidates = sorted(glob.glob(bundled))
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "opus_decode"):
            return _declare(lib)
    raise OpusError("libopus not found: neither PyAV's bundled copy nor a system libopus (apt: libopus0)")


def usable() -> bool:
    """Whether libopus loads. A missing library must not fail every call: the caller falls back to
    aiortc's decoder, and the operator hears it once in the logs (and from the metric per call)."""
    global _warned
    try:
        libopus()
    except OpusError as e:
        if not _warned:
            _warned = True
            log.warning("libopus unavailable, aiortc decodes inbound audio (no FEC repair): %s", e)
        return False
    return True


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int16),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.opus_packet_get_nb_samples.restype = ctypes.c_int
    lib.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ctypes.c_int]
    return lib


class OpusDecoder:
    """One stream's decoder state: s16 PCM out at `rate` (8/12/16/24/48 kHz), `channels` 1 or 2.

    Any Opus stream decodes at any of these rates and channel counts (a browser's stereo 48 kHz
    stream comes out as 16 kHz mono, mixed down by libopus)."""

    def __init__(self, rate: int = 16_000, channels: int = 1) -> None:
        self._lib = libopus()
        err = ctypes.c_int(0)
        state = self._lib.opus_decoder_create(rate, channels, ctypes.byref(err))
        if err.value != OPUS_OK or not state:
            raise OpusError(f"opus_decoder_create({rate}, {channels}): {self._strerror(err.value)}")
        self._state: int | None = state
        self.rate = rate
        self.channels = channels
        self._max = rate * _MAX_FRAME_MS // 1000
        self._pcm = (ctypes.c_int16 * (self._max * channels))()
        self.last_samples = rate // 50  # per channel; what a concealed frame lasts (20 ms until told)

    def _strerror(self, code: int) -> str:
        return (self._lib.opus_strerror(code) or b"unknown error").decode()

    def _run(self, data: bytes | None, samples: int, fec: int) -> bytes:
        if self._state is None:
            raise OpusError("decoder is closed")
        n = self._lib.opus_decode(self._state, data, len(data) if data else 0, self._pcm, samples, fec)
        if n < 0:
            raise OpusError(f"opus_decode: {self._strerror(n)}")
        return ctypes.string_at(self._pcm, n * self.channels * 2)

    def samples_in(self, packet: bytes) -> int:
        """Samples per channel this packet decodes to; OpusError if it is not a valid packet."""
        n = self._lib.opus_packet_get_nb_samples(packet, len(packet), self.rate)
        if n < 0:
            raise OpusError(f"opus_packet_get_nb_samples: {self._strerror(n)}")
        return int(n)

    def decode(self, packet: bytes) -> bytes:
        pcm = self._run(packet, self._max, 0)
        self.last_samples = len(pcm) // (2 * self.channels) or self.last_samples
        return pcm

    def conceal(self) -> bytes:
        """PLC: audio for one lost packet, extrapolated from what came before."""
        return self._run(None, self.last_samples, 0)

    def recover(self, next_packet: bytes) -> bytes:
        """Audio for the packet lost just before `next_packet`, from its in-band FEC data; libopus
        falls back to PLC when the packet carries none."""
        return self._run(next_packet, self.last_samples, 1)

    @property
    def closed(self) -> bool:
        return self._state is None

    def close(self) -> None:
        if self._state is not None:
            self._lib.opus_decoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()
