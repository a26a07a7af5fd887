"""The agent's voice: an outbound WebRTC audio track, fed by the pipeline's output stage.

AIGeneratedAudioTrack hands aiortc one 20 ms frame per call, paced against an
absolute clock: it never bursts (frames are never handed out faster than real time) and never
drifts (each deadline is computed from the start, not from the previous frame). A frame that comes
late (a busy event loop, a process waiting for a CPU; the frame that slept through the stall too) is
not caught up by a burst: the stream skips to the present, and its RTP timestamps skip with it, so
the frames after a stall are stamped with when they are sent. Stamped as if nothing had happened,
they would arrive as late as the stall was long, and the browser's jitter buffer, which sizes itself
to the worst lateness it has seen and hardly forgets it within a call, would hold every reply that
much longer. Silence skips at the first late frame (a gap in silence is inaudible, and most stalls
come while the user speaks: the recognizer's work); speech skips once a frame is RESYNC_AFTER_S
late, so a hiccup the browser's buffer absorbs plays on without a gap (docs/performance.md, "The
frame that slept through a stall"). With nothing to say it sends silence, so the RTP stream and the
client's jitter buffer stay steady.

Every buffered chunk carries its turn; `interrupt()` drops the buffer and raises the floor, so a
chunk of an older turn that arrives late is discarded rather than played. `hold()` pauses the
reply without losing it (user sound that may be only a cough): silence goes out, the buffer and
its offsets stay as they are, and `resume()` plays on from the exact byte where it stopped. What
the listener never heard of it (still in their playout buffer when they went silent at the hold)
is given back with `rewind()` while it is held: the track keeps the last second it sent for that.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voice_agent.media.audio import OUTPUT_RATE, frame_bytes
from voice_agent.telemetry import metrics

SAMPLES_PER_FRAME = OUTPUT_RATE // 50
FRAME_BYTES = frame_bytes(OUTPUT_RATE)
TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)
SILENCE_WARMUP_FRAMES = 3
LATE_AFTER_S = 0.02  # a frame produced a whole frame period after its slot counts as late
# Speech this late skips to the present (see the module docstring): about what a browser's buffer
# holds on a quiet link, so a shorter hiccup plays on without a gap; silence skips once it is late.
RESYNC_AFTER_S = 0.04
RESYNC_SILENCE_AFTER_S = LATE_AFTER_S
_SILENCE = bytes(FRAME_BYTES)
# What a hold can give back: a listener's playout buffer holds far less (docs/api.md, `held`).
REWIND_KEEP_BYTES = OUTPUT_RATE * 2
# Bound once: recv runs 50 times a second per call, and a label lookup is a dict walk under a lock.
_SILENCE_SENT = metrics.OUTPUT_FRAMES.labels("silence")
_SPEECH_SENT = metrics.OUTPUT_FRAMES.labels("speech")
OpusPacket: TypeAlias = "av.Packet[Any]"  # generic only in PyAV's stubs


@dataclass(slots=True)
class _Chunk:
    turn: int
    index: int
    pcm: memoryview
    offset: int = 0


class OpusFrameEncoder:
    """Opus-encodes each 20 ms frame here, so aiortc's sender only packetizes it.

    Handed raw frames, aiortc upmixes them to stereo, encodes at 96 kb/s on a thread-pool hop per
    frame and computes an RFC 6465 audio level with a Python loop over every sample: together the
    largest per-session cost of an idle call. Mono voice at 32 kb/s encoded inline takes tens of
    microseconds, and any Opus decoder (browsers negotiate opus/48000/2) plays mono packets.
    """

    def __init__(self, bitrate: int = 32_000) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = OUTPUT_RATE
        codec.time_base = TIME_BASE
        # In-band FEC: each packet carries a low-rate copy of the one before, so a receiver that
        # lost it recovers the words, not just a smoothed gap; the 10 % loss hint makes libopus
        # actually spend bits on it.
        codec.options = {"application": "voip", "fec": "1", "packet_loss": "10"}
        self._codec = codec
        self._frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        self._frame.sample_rate = OUTPUT_RATE
        self._frame.time_base = TIME_BASE
        # Steady-state silence: once a few silent frames have been encoded for real (so the decoder
        # fades the last speech out), idle frames reuse these bytes instead of running the encoder.
        # Encoder and decoder states stay consistent: both last saw silence.
        for i in range(SILENCE_WARMUP_FRAMES):
            packet = self._encode(_SILENCE, i * SAMPLES_PER_FRAME)
        self._silence = bytes(packet) if packet is not None else b"\xf8\xff\xfe"
        self._silent_run = 0

    def _encode(self, pcm: bytes, pts: int) -> OpusPacket | None:
        self._frame.planes[0].update(pcm)
        self._frame.pts = pts
        packets = self._codec.encode(self._frame)
        return packets[0] if packets else None

    def encode(self, pcm: bytes, pts: int) -> OpusPacket:
        self._silent_run = self._silent_run + 1 if pcm is _SILENCE else 0
        if self._silent_run > SILENCE_WARMUP_FRAMES:
            packet = av.Packet(self._silence)
        else:
            packet = self._encode(pcm, pts) or av.Packet(self._silence)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet


PlayedCallback = Callable[[int, int, int], None]  # turn, sentence index, bytes played
IdleCallback = Callable[[int], None]  # turn whose audio has fully played


class AIGeneratedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        session_id: str,
        clock: Callable[[], float] = time.monotonic,
        count_metrics: bool = True,
        encode: bool = True,
    ) -> None:
        super().__init__()
        self._encoder = OpusFrameEncoder() if encode else None
        self.session_id = session_id
        self._count_metrics = count_metrics
        self._clock = clock
        self._chunks: deque[_Chunk] = deque()
        self._sent: deque[_Chunk] = deque()  # chunks sent in full, newest last, for `rewind`
        self._sent_bytes = 0
        self._floor_turn = 0
        self._start: float | None = None
        self._pts = 0
        self.on_played: PlayedCallback | None = None
        self.on_idle: IdleCallback | None = None
        self._speaking_turn: int | None = None
        self._held_turn: int | None = None
        self.frames_sent = 0
        self.late_resyncs = 0
        self.late_frames = 0
        self.stalled_s = 0.0
        self._behind = 0.0  # how far the previous frame came after its slot

    # --- producer side ------------------------------------------------------------------------
    def enqueue(self, turn: int, index: int, pcm: bytes) -> bool:
        if turn < self._floor_turn or not pcm:
            return False
        self._chunks.append(_Chunk(turn, index, memoryview(pcm)))
        return True

    def interrupt(self, new_floor_turn: int) -> None:
        self._floor_turn = max(self._floor_turn, new_floor_turn)
        self._chunks.clear()
        self._forget_sent()
        self._speaking_turn = None
        self._held_turn = None  # a hold belongs to the turn it paused; the next turn starts unheld

    def hold(self, turn: int) -> None:
        """Send silence from the next frame on; nothing is dropped, and `on_played` is not called, so
        what the user heard stays exact. A hold for a turn that has already ended is ignored: it
        must never pause the next one."""
        if turn >= self._floor_turn:
            self._held_turn = turn

    def resume(self, turn: int) -> None:
        if self._held_turn == turn:
            self._held_turn = None

    def rewind(self, turn: int, nbytes: int) -> int:
        """Step back `nbytes` (whole samples) in the held `turn`, so that `resume` plays again what
        the listener lost when they went silent; `on_played` is told of the bytes taken back, so what
        the user heard stays exact. Returns the bytes stepped back: fewer at the turn's first byte or
        at the end of what the track keeps, none unless `turn` is held."""
        if self._held_turn != turn or nbytes <= 0:
            return 0
        left = nbytes - nbytes % 2
        while left > 0:
            head = self._chunks[0] if self._chunks else None
            if head is not None and head.turn == turn and head.offset > 0:
                n = min(left, head.offset)
                head.offset -= n
                left -= n
                if self.on_played is not None:
                    self.on_played(turn, head.index, -n)
                continue
            if not self._sent or self._sent[-1].turn != turn:
                break
            chunk = self._sent.pop()
            self._sent_bytes -= len(chunk.pcm)
            chunk.offset = len(chunk.pcm)
            self._chunks.appendleft(chunk)
        return nbytes - nbytes % 2 - left

    def rewind_ms(self, turn: int, ms: float) -> int:
        """`rewind` by a duration of audio; returns the bytes stepped back."""
        return self.rewind(turn, round(ms * OUTPUT_RATE / 1000) * 2)

    def _forget_sent(self) -> None:
        self._sent.clear()
        self._sent_bytes = 0

    def _keep_sent(self, chunk: _Chunk) -> None:
        if self._sent and self._sent[-1].turn != chunk.turn:
            self._forget_sent()  # only the held turn is ever stepped back in
        self._sent.append(chunk)
        self._sent_bytes += len(chunk.pcm)
        while self._sent_bytes - len(self._sent[0].pcm) >= REWIND_KEEP_BYTES:
            self._sent_bytes -= len(self._sent.popleft().pcm)

    @property
    def held(self) -> int | None:
        """The turn whose audio is held, if any."""
        return self._held_turn

    @property
    def buffered_bytes(self) -> int:
        return sum(len(c.pcm) - c.offset for c in self._chunks)

    @property
    def speaking(self) -> bool:
        return bool(self._chunks)

    # --- consumer side (aiortc's sender calls recv every 20 ms) -------------------------------
    async def recv(self) -> av.AudioFrame | OpusPacket:
        pcm = await self.recv_pcm()
        if self._encoder is not None:
            return self._encoder.encode(pcm, self._pts)
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = OUTPUT_RATE
        frame.time_base = TIME_BASE
        return frame

    async def recv_pcm(self) -> bytes:
        """The next 20 ms of 48 kHz mono PCM, at its time: the paced core of `recv`."""
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        self.frames_sent += 1
        return self._take()

    async def _pace(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
            return
        self._pts += SAMPLES_PER_FRAME
        wait = self._start + self._pts / OUTPUT_RATE - now
        if wait > 0:
            self._behind = 0.0
            await asyncio.sleep(wait)
            # A stall mostly comes while the track sleeps (it sleeps most of the time): the frame
            # that wakes from it is as late as any other, and must not go out stamped in sequence.
            now = self._clock()
            wait = self._start + self._pts / OUTPUT_RATE - now
            if wait >= -LATE_AFTER_S:
                return
        if wait < -LATE_AFTER_S:
            self.late_frames += 1
            # Stalled time, not stall events: only how much further behind this frame fell counts
            # (the frames that catch up after one stall are each late, but by less and less).
            stalled = max(0.0, -wait - self._behind)
            self.stalled_s += stalled
            if self._count_metrics:
                metrics.OUTPUT_LATE_FRAMES.inc()
                metrics.OUTPUT_STALLED.inc(stalled)
        self._behind = -wait
        speech_next = bool(self._chunks) and self._held_turn is None
        if wait < -(RESYNC_AFTER_S if speech_next else RESYNC_SILENCE_AFTER_S):
            # Further behind than it may be: this frame takes the slot of now, its timestamp with it.
            self._pts = round((now - self._start) * OUTPUT_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            self.late_resyncs += 1
            self._behind = 0.0

    def _take(self) -> bytes:
        if not self._chunks or self._held_turn is not None:
            if self._count_metrics:
                _SILENCE_SENT.inc()
            return _SILENCE
        out = bytearray()
        while self._chunks and len(out) < FRAME_BYTES:
            chunk = self._chunks[0]
            n = min(FRAME_BYTES - len(out), len(chunk.pcm) - chunk.offset)
            out += chunk.pcm[chunk.offset : chunk.offset + n]
            chunk.offset += n
            self._speaking_turn = chunk.turn
            if self.on_played is not None:
                self.on_played(chunk.turn, chunk.index, n)
            if chunk.offset >= len(chunk.pcm):
                self._keep_sent(self._chunks.popleft())
        if len(out) < FRAME_BYTES:
            out += _SILENCE[: FRAME_BYTES - len(out)]
        if self._count_metrics:
            _SPEECH_SENT.inc()
        if not self._chunks and self._speaking_turn is not None:
            turn, self._speaking_turn = self._speaking_turn, None
            if self.on_idle is not None:
                self.on_idle(turn)
        return bytes(out)
