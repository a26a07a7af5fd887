"""Offline streaming STT with PocketSphinx (its English model ships in the wheel).

A decoder holds ~90 MB of model, so decoders are pooled and lent per utterance rather than kept
per session: idle sessions cost nothing here. The search settings are measured across five voices
(`python -m bench.decoder`, docs/providers.md): the beam stays pocketsphinx's own, the word beam
and the cap on models per frame stay narrowed, and the second passes (fwdflat, bestpath) are off
so the final result is ready a few ms after the end of speech.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from voice_agent.providers.backchannel import BackchannelLook, backchannels_of, no_request
from voice_agent.providers.base import EndpointCallback, InterimCallback

log = logging.getLogger(__name__)

# Streaming needs live cepstral mean normalization (pocketsphinx defaults to batch, which only
# works on whole utterances). The initial mean is the average of five voices' (flite's slt, awb,
# rms, kal16, Piper's joe) through the Opus path at TARGET_DBFS, not one voice's; after each
# utterance the adapted mean is kept per session, since decoders are shared.
CMN_INIT = "39.53,5.79,6.30,20.60,0.04,-2.17,4.15,-6.58,-3.21,-2.60,4.32,2.32,-0.14"
DECODER_CONFIG: dict[str, Any] = {
    "samprate": 16000,
    "cmn": "live",
    "cmninit": CMN_INIT,
    "fwdflat": False,
    "bestpath": False,
    "beam": 1e-48,  # pocketsphinx's default: 1e-40 saved 6 % of the CPU, lost 11 points of accuracy
    "wbeam": 1e-30,
    "maxhmmpf": 3000,
    "loglevel": "FATAL",
}
INTERIM_EVERY_FRAMES = 10  # 200 ms of audio between interim hypotheses
DECODE_BYTES = 640  # 20 ms at 16 kHz: the most decoded without letting the event loop run

# The recognizer's features are not level-free: the same words 27 dB quieter lose a quarter of
# their accuracy, and a browser's microphone level is anyone's guess. Each utterance is brought
# to one speech level before decoding, at a level where accuracy peaks (measured across voices;
# docs/providers.md). The gain is constant through an utterance (a gain that moved would move the
# features with it), so a session's first utterance is not decoded until SETTLE_MS of sound (from
# the first slice above ONSET_DBFS) is in to measure; never later than SETTLE_MAX_MS into it. The
# session keeps the level for its next utterances, which start at once.
TARGET_DBFS = -30.0
SETTLE_MS = 300
SETTLE_MAX_MS = 1000
ONSET_DBFS = -50.0
MAX_GAIN_DB = 30.0
_SLICE = 320  # samples: 20 ms at 16 kHz
_ACTIVE_DB = 25.0  # slices this far below the loudest are pauses or noise, not the speech level
_QUIET_DBFS = -70.0  # no speech to measure below this: leave the level alone
_ONSET_POWER = 32768**2 * 10 ** (ONSET_DBFS / 10)

# An utterance that began during a reply gets a second look (providers/backchannel.py) while its
# sound is no longer than a backchannel: its active slices (as for the level) span at most
# BACKCHANNEL_MAX_MS. Its audio is kept for that, up to KEEP_MAX_MS (pre-roll and the silence
# before the turn ends included). Meanwhile it has no interim hypotheses: the main decoder's are its
# language model's guesses at a backchannel ("the flood"), and the look's would cost a decode of the
# whole sound every INTERIM_EVERY_FRAMES; the look answers at the pause instead.
BACKCHANNEL_MAX_MS = 1000
KEEP_MAX_MS = 4000


def slice_powers(pcm: bytes | bytearray) -> list[float]:
    """Mean power of each whole 20 ms slice of s16 PCM."""
    samples = np.frombuffer(pcm, dtype="<i2")
    n = samples.size // _SLICE
    power = (samples[: n * _SLICE].astype(np.float64).reshape(n, _SLICE) ** 2).mean(axis=1)
    return [float(p) for p in power]


def _active(powers: list[float]) -> list[int]:
    """The slices within 25 dB of the loudest: the speech, not pauses or the pre-roll's quiet."""
    loudest = max(powers, default=0.0)
    if loudest <= 0:
        return []
    return [i for i, p in enumerate(powers) if p >= loudest * 10 ** (-_ACTIVE_DB / 10)]


def speech_level_dbfs(powers: list[float]) -> float | None:
    """Active speech level: mean power of the active slices; None when there is nothing to measure."""
    active = [powers[i] for i in _active(powers)]
    if not active:
        return None
    level = 10 * float(np.log10(sum(active) / len(active) / 32768**2))
    return level if level > _QUIET_DBFS else None


def active_span_ms(powers: list[float]) -> int:
    """From the first active slice to the end of the last: how long the sound lasted."""
    active = _active(powers)
    return (active[-1] - active[0] + 1) * 20 if active else 0


def _gain_to_target(level_dbfs: float) -> float:
    return float(10 ** (min(TARGET_DBFS - level_dbfs, MAX_GAIN_DB) / 20))


def apply_gain(pcm: bytes | bytearray, gain: float) -> bytes:
    if gain == 1.0:
        return bytes(pcm)
    scaled = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * gain
    out: bytes = np.clip(scaled, -32768, 32767).astype("<i2").tobytes()
    return out


class DecoderPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        self._created = 0
        self._lock = asyncio.Lock()

    async def prewarm(self, n: int = 1) -> None:
        """Create decoders until `n` (at most the pool's size) exist."""
        while self._created < min(n, self.size):
            self._free.put_nowait(await self._create())

    async def _create(self) -> Any:
        from pocketsphinx import Decoder

        self._created += 1
        return await asyncio.to_thread(Decoder, **DECODER_CONFIG)

    async def acquire(self) -> Any:
        if self._free.empty():
            async with self._lock:
                if self._free.empty() and self._created < self.size:
                    return await self._create()
        return await self._free.get()

    def release(self, decoder: Any) -> None:
        self._free.put_nowait(decoder)


class PocketSphinxStream:
    provider = "local"

    def __init__(
        self,
        pool: DecoderPool,
        on_interim: InterimCallback,
        state: dict[str, Any],
        look: BackchannelLook | None = None,
    ) -> None:
        self._pool = pool
        self._look = look
        self._during_reply = False
        self._kept = bytearray()  # the utterance's audio as received, for the second look
        self._state = state
        self._on_interim = on_interim
        self._decoder: Any = None
        self._pending = bytearray()
        self._powers: list[float] = []  # per 20 ms slice as received: the utterance's level
        self._unmeasured = bytearray()  # less than a slice, until the next audio completes it
        self._gain = 1.0
        self._acquire = asyncio.create_task(pool.acquire())
        self._frames = 0
        self._last_interim = ""
        self._closed = False
        self._in_utt = False
        self._cmn = CMN_INIT  # the mean the main decoder started from
        self._looked: tuple[tuple[int, float], list[str]] | None = None  # (kept bytes, gain): heard

    def _ready(self, settled: bool) -> bool:
        """True once decoding has begun: a decoder is ours and the utterance's level is known
        (`settled`, or the session knows its speaker's level). Until then audio waits in
        _pending; nothing is lost."""
        if self._decoder is None:
            if not self._acquire.done() or not (settled or "level_dbfs" in self._state):
                return False
            self._begin(self._acquire.result())
        return True

    def _settled(self) -> bool:
        """Enough of the utterance is in to measure its level (see SETTLE_MS)."""
        if len(self._powers) * 20 >= SETTLE_MAX_MS:
            return True
        onset = next((i for i, p in enumerate(self._powers) if p >= _ONSET_POWER), None)
        return onset is not None and (len(self._powers) - onset) * 20 >= SETTLE_MS

    def _begin(self, decoder: Any) -> None:
        self._decoder = decoder
        level = self._state.get("level_dbfs")
        if level is None:
            level = speech_level_dbfs(self._powers)
        if level is not None:
            self._gain = _gain_to_target(level)
        self._cmn = self._state.get("cmn", CMN_INIT)
        decoder.set_cmn(self._cmn)
        decoder.start_utt()
        self._in_utt = True

    def _decode_pending(self) -> None:
        if self._pending:
            self._decoder.process_raw(apply_gain(self._pending, self._gain), False, False)
            self._pending.clear()

    async def _decode_yielding(self) -> None:
        """Decode what is pending a frame at a time, letting the event loop run after each.

        The decoder runs on the event loop (pocketsphinx never releases the GIL, so a thread would
        not help) and holds it for a few ms per 20 ms of audio. What waited for the level (up to
        SETTLE_MAX_MS) or came in a burst (the VAD's pre-roll) decoded in one go held every call on
        the agent, their outbound audio included, for 100 ms and more. A frame at a time, nothing
        holds the loop longer than one frame's decode. finish(), partial() and aclose() may run in
        between: they take the rest of the audio in order, or end the utterance; either way this
        stops at once."""
        while self._pending and self._decoder is not None:
            chunk = bytes(self._pending[:DECODE_BYTES])
            del self._pending[:DECODE_BYTES]
            self._decoder.process_raw(apply_gain(chunk, self._gain), False, False)
            await asyncio.sleep(0)

    async def send(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._pending += pcm
        if len(self._kept) < KEEP_MAX_MS * 32:  # 32 bytes per ms
            self._kept += pcm
        self._unmeasured += pcm
        whole = len(self._unmeasured) - len(self._unmeasured) % (2 * _SLICE)
        self._powers += slice_powers(self._unmeasured[:whole])
        del self._unmeasured[:whole]
        if not self._ready(self._settled()):
            return
        await self._decode_yielding()
        if self._decoder is None:  # the utterance ended (or was abandoned) while we yielded
            return
        self._frames += 1
        if self._frames % INTERIM_EVERY_FRAMES == 0 and not self._short_over_reply():
            text = self._words()
            if text and text != self._last_interim:
                self._last_interim = text
                self._on_interim(text)

    def partial(self) -> str | None:
        """The decoder's best path through all the audio sent so far (no decoder yet: None)."""
        if self._closed or not self._ready(True):
            return None
        self._decode_pending()
        return self._words()

    def during_reply(self) -> None:
        self._during_reply = True

    def _short_over_reply(self) -> bool:
        """The utterance began during a reply and its sound is still as short as a backchannel."""
        return (
            self._during_reply
            and self._look is not None
            and len(self._kept) < KEEP_MAX_MS * 32
            and active_span_ms(self._powers) <= BACKCHANNEL_MAX_MS
        )

    def _words(self, final: bool = False) -> str:
        """The main decoder's best path so far; for a short utterance that began during a reply,
        the second look's words instead (providers/backchannel.py): the main decoder's language
        model is what turns a backchannel into other words, and a hypothesis that does so twice
        running cuts the reply. Its final transcript stays the main decoder's unless the look
        heard no request (the look knows few words); then it is the backchannels the look heard."""
        hyp = self._decoder.hyp()
        text: str = hyp.hypstr.strip() if hyp is not None else ""
        if text and self._short_over_reply():
            heard = self._look_again()
            if no_request(heard):
                return backchannels_of(heard)
            if heard and not final:
                return " ".join(heard)
        return text

    def _look_again(self) -> list[str]:
        """The look's words for the audio kept so far. The same audio at the same gain is heard the
        same, so a final that adds nothing to the pause's audio costs no second decode."""
        assert self._look is not None
        # At the sound's own level, not the session's: the look is short enough to measure whole,
        # and its grammar is more level-sensitive than the main decoder (6 dB either way lost some
        # backchannels).
        level = speech_level_dbfs(self._powers)
        gain = self._gain if level is None else _gain_to_target(level)
        key = (len(self._kept), gain)
        if self._looked is None or self._looked[0] != key:
            self._looked = key, self._look.hear(apply_gain(self._kept, gain), self._cmn)
        return self._looked[1]

    async def finish(self) -> str:
        if self._closed:
            return ""
        if self._decoder is None:
            await self._acquire
            self._ready(True)
        self._decode_pending()
        self._decoder.end_utt()
        self._in_utt = False
        # True: read the mean end_utt settled on; without it the text can still be the one set at
        # the start (pocketsphinx refreshes it only when a frame was left over), and the session's
        # adaptation would be lost.
        self._state["cmn"] = self._decoder.get_cmn(True)
        text = self._words(final=True)
        level = speech_level_dbfs(self._powers)
        if text and level is not None:  # words, not a cough: the speaker's level
            self._state["level_dbfs"] = level
        await self.aclose()
        return text

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
        self._look: BackchannelLook | None = None  # made at start: without it, no second look

    async def start(self) -> None:
        """Create every decoder before the agent serves: creating one holds the GIL for ~0.5 s even
        in a worker thread, which would stall every live call's audio if it happened mid-call."""
        await self._pool.prewarm(self._pool.size)
        if self._look is None:
            self._look = await asyncio.to_thread(BackchannelLook.create, DECODER_CONFIG)

    async def close(self) -> None:
        return None

    async def release(self, state: dict[str, Any]) -> None:
        return None

    async def open_stream(
        self, on_interim: InterimCallback, state: dict[str, Any], on_endpoint: EndpointCallback | None = None
    ) -> PocketSphinxStream:
        """pocketsphinx has no endpointing of its own: turns end by the local VAD."""
        return PocketSphinxStream(self._pool, on_interim, state, self._look)
