"""The uplink of bench.loss: a client that speaks through an Opus encoder configured like a browser's
or like today's Python client, over a network that loses packets by a seeded pattern.

The encoders are libopus driven directly (the copy PyAV bundles), not the agent's encoder: what is
measured is how the agent's receive path copes with what senders really send, so the encoding must
not come from the code under test (pacing, signaling and finding the library are the test client's).
PyAV is not enough here either, because it applies encoder options only when the codec is opened,
and a browser changes its loss setting mid-call.

A browser does not send in-band FEC from the first packet. Chrome's Opus encoder (WebRTC's
AudioEncoderOpusImpl) turns FEC on when the remote SDP says `useinbandfec=1`, but libopus only
spends bits on it once told to expect loss, and that figure comes from the receiver: each RTCP
receiver report's "fraction lost" goes through an exponential filter (time constant 10 s, the first
report taken as it is), is capped at 20 % and handed to libopus as its packet-loss percentage. Until
a report with loss arrives, nothing is protected. `BROWSER` reproduces that loop against the RTCP
the agent really sends; `FEC_ALWAYS` is today's client (FEC and a 10 % loss hint from the first
packet, the settings of the agent's own track encoder), the best case.
"""

from __future__ import annotations

import ctypes
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket, is_rtcp

from voice_agent.media.opus import libopus
from voice_agent.media.red import add_red, join_red, red_payload_types
from voice_agent.media.track import SAMPLES_PER_FRAME, TIME_BASE, AIGeneratedAudioTrack, OpusPacket
from voice_agent.protocol.signaling import opus_payload_types
from voice_agent.testing.client import VoiceClient

# libopus' public constants (opus_defines.h).
_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_SET_VBR = 4006
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_DTX = 4016
_SET_VBR_CONSTRAINT = 4020
_MAX_PACKET = 1500

_FMTP_FEC = re.compile(r"^a=fmtp:\d+ .*\buseinbandfec=1\b", re.MULTILINE)


@dataclass(frozen=True)
class SenderSpec:
    """How one kind of client encodes its microphone."""

    name: str
    description: str
    complexity: int
    vbr_constrained: bool
    # libopus' packet-loss percentage before any report: 0 means no FEC is spent yet.
    initial_loss_percent: int
    # Follow the receiver's reports as WebRTC does (else keep the initial figure).
    follows_reports: bool
    bitrate: int = 32_000
    # Offer RED as Chromium does, and send it (one earlier frame per packet) when the answer lists it
    # first (media/red.py).
    red: bool = False


BROWSER = SenderSpec(
    name="browser-like",
    description="Chrome's Opus settings (32 kb/s mono VOIP, complexity 9, constrained VBR); FEC bits "
    "only once RTCP receiver reports show loss (smoothed, capped at 20 %); RED offered as Chrome "
    "offers it, and sent (the previous frame again in each packet) when the answer lists it first",
    complexity=9,
    vbr_constrained=True,
    initial_loss_percent=0,
    follows_reports=True,
    red=True,
)
BROWSER_NO_RED = SenderSpec(
    name="browser-like, no RED",
    description="the browser-like sender of a browser that offers no RED: FEC only once reports show loss",
    complexity=9,
    vbr_constrained=True,
    initial_loss_percent=0,
    follows_reports=True,
)
FEC_ALWAYS = SenderSpec(
    name="fec-always",
    description="today's Python client (the agent's track encoder through FFmpeg: 32 kb/s mono VOIP, "
    "complexity 10, unconstrained VBR): FEC with a 10 % loss hint from the first packet",
    complexity=10,
    vbr_constrained=False,
    initial_loss_percent=10,
    follows_reports=False,
)


class LossSmoother:
    """WebRTC's packet-loss smoother (rtc::ExpFilter with alpha 0.9999 per ms): the first sample is
    taken as it is, later ones are weighted by the time since the one before."""

    ALPHA_PER_MS = 0.9999
    CAP = 0.2

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self._value: float | None = None

    def add(self, fraction: float) -> float:
        now = self._clock()
        if self._value is None:
            self._value = fraction
        else:
            weight = self.ALPHA_PER_MS ** ((now - self._last) * 1000)
            self._value = weight * self._value + (1 - weight) * fraction
        self._last = now
        return min(max(self._value, 0.0), self.CAP)


class OpusSender:
    """One call's encoder: 20 ms frames of 48 kHz mono s16 in, Opus packets out, with the loss
    percentage it was told (by its spec, or by the receiver's reports)."""

    def __init__(self, spec: SenderSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._start = clock()
        # Its own handle on the library, so these prototypes never touch the agent's decoder's.
        self._lib = ctypes.CDLL(libopus()._name)
        self._lib.opus_encoder_create.restype = ctypes.c_void_p
        self._lib.opus_encoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        self._lib.opus_encode.restype = ctypes.c_int32
        self._lib.opus_encode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int32,
        ]
        self._lib.opus_encoder_destroy.restype = None
        self._lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        self._has_lbrr: Any = getattr(self._lib, "opus_packet_has_lbrr", None)
        err = ctypes.c_int(0)
        state = self._lib.opus_encoder_create(48_000, 1, _APPLICATION_VOIP, ctypes.byref(err))
        if err.value != 0 or not state:
            raise RuntimeError(f"opus_encoder_create failed: {err.value}")
        self._state: int | None = state
        self._ctl(_SET_BITRATE, spec.bitrate)
        self._ctl(_SET_COMPLEXITY, spec.complexity)
        self._ctl(_SET_VBR, 1)
        self._ctl(_SET_VBR_CONSTRAINT, int(spec.vbr_constrained))
        self._ctl(_SET_DTX, 0)
        self._ctl(_SET_INBAND_FEC, 1)
        self.loss_percent = -1
        self._set_loss(spec.initial_loss_percent)
        self._smoother = LossSmoother(clock)
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self.frames = 0
        # Frame index from which libopus was told to expect loss (None: never).
        self.fec_from_frame: int | None = 0 if spec.initial_loss_percent > 0 else None
        self.lbrr_frames: list[int] = []  # indices of packets that carry FEC data
        self.reports: list[tuple[float, float]] = []  # (seconds since start, fraction lost)

    def _ctl(self, request: int, value: int) -> None:
        if self._state is None:
            raise RuntimeError("encoder is closed")
        code = self._lib.opus_encoder_ctl(
            ctypes.c_void_p(self._state), ctypes.c_int(request), ctypes.c_int(value)
        )
        if code != 0:
            raise RuntimeError(f"opus_encoder_ctl({request}, {value}) failed: {code}")

    def _set_loss(self, percent: int) -> None:
        if percent != self.loss_percent:
            self._ctl(_SET_PACKET_LOSS_PERC, percent)
            self.loss_percent = percent

    def remote_fec(self, answer_sdp: str) -> None:
        """A browser sends FEC only to a receiver whose SDP asks for it (RFC 7587)."""
        if self.spec.follows_reports and not _FMTP_FEC.search(answer_sdp):
            self._ctl(_SET_INBAND_FEC, 0)

    def on_report(self, fraction_lost: int) -> None:
        """An RTCP report block about this stream; `fraction_lost` in 1/256 as on the wire."""
        self.reports.append((round(self._clock() - self._start, 3), fraction_lost / 256))
        if not self.spec.follows_reports:
            return
        smoothed = self._smoother.add(fraction_lost / 256)
        self._set_loss(int(smoothed * 100 + 0.5))
        if self.loss_percent > 0 and self.fec_from_frame is None:
            self.fec_from_frame = self.frames

    def encode(self, pcm: bytes) -> bytes:
        if self._state is None:
            raise RuntimeError("encoder is closed")
        n = self._lib.opus_encode(self._state, pcm, SAMPLES_PER_FRAME, self._out, _MAX_PACKET)
        if n < 0:
            raise RuntimeError(f"opus_encode failed: {n}")
        packet = self._out.raw[:n]
        if self._has_lbrr is not None and self._has_lbrr(packet, n) == 1:
            self.lbrr_frames.append(self.frames)
        self.frames += 1
        return packet

    def close(self) -> None:
        if self._state is not None:
            self._lib.opus_encoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


@dataclass(frozen=True)
class LossPattern:
    """Which outgoing RTP packets the network loses: independently at `rate` ("random", Bernoulli),
    or in bursts ("bursty": a two-state Gilbert-Elliott chain that loses every packet in its bad
    state and none in its good one, with `burst` packets lost in a row on average)."""

    kind: Literal["random", "bursty"]
    rate: float
    burst: float = 2.5

    def losses(self, seed: str) -> Iterator[bool]:
        """True for each packet lost, in sending order; the same seed gives the same sequence."""
        rng = random.Random(seed)
        if self.kind == "random" or self.rate <= 0:
            while True:
                yield rng.random() < self.rate
        leave = 1 / self.burst
        enter = self.rate * leave / (1 - self.rate)  # keeps the long-run loss at `rate`
        bad = rng.random() < self.rate
        while True:
            yield bad
            bad = rng.random() >= leave if bad else rng.random() < enter


class LossyUplink:
    """Drops the client's outgoing RTP (never RTCP) where a loss sequence says, before encryption:
    only the client's network is lossy, the agent's receive path is untouched."""

    def __init__(self, losses: Iterator[bool]) -> None:
        self._losses = losses
        self.sent = 0
        self.dropped: list[int] = []  # indices (in sending order) of the packets lost
        self._red: RedWrapper | None = None

    def send_red(self, red_type: int) -> None:
        """From now on each packet goes as RED (the previous frame again), as a browser sends it."""
        self._red = RedWrapper(red_type)

    def install(self, dtls: Any) -> None:
        send: Callable[[bytes], Awaitable[None]] = dtls._send_rtp

        async def lossy(data: bytes) -> None:
            if not is_rtcp(data):
                if self._red is not None:
                    data = self._red.wrap(data)
                index, self.sent = self.sent, self.sent + 1
                if next(self._losses):
                    self.dropped.append(index)
                    return
            await send(data)

        setattr(dtls, "_send_rtp", lossy)  # noqa: B010 - an instance attribute over a method


class RedWrapper:
    """Chromium's RED for Opus on plain RTP packets: each payload goes out again inside the next
    packet (one earlier block, its timestamp offset from the RTP headers), under the RED payload type."""

    def __init__(self, red_type: int) -> None:
        self.red_type = red_type
        self._previous: tuple[int, bytes] | None = None  # (timestamp, payload)

    def wrap(self, data: bytes) -> bytes:
        head = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:  # a header extension: 4 bytes, then its length in 32-bit words
            head += 4 + 4 * int.from_bytes(data[head + 2 : head + 4], "big")
        opus_type, timestamp, payload = data[1] & 0x7F, int.from_bytes(data[4:8], "big"), data[head:]
        earlier = []
        if self._previous is not None:
            offset = (timestamp - self._previous[0]) & 0xFFFFFFFF
            if 0 < offset < 1 << 14:
                earlier.append((offset, self._previous[1]))
        self._previous = (timestamp, payload)
        marker = data[1] & 0x80
        return (
            data[:1] + bytes([marker | self.red_type]) + data[2:head] + join_red(opus_type, payload, earlier)
        )


def offer_red(sdp: str, red_type: int = 63) -> str:
    """The offer with RED for its Opus after it, as Chromium offers it (not first: a browser prefers
    plain Opus unless the answer puts RED first)."""
    opus = sorted(opus_payload_types(sdp))
    return add_red(sdp, red_type, opus[0], first=False) if opus else sdp


def red_first(answer: str) -> int | None:
    """The RED payload type an answer lists before its Opus (the sender then sends RED), if any."""
    red = red_payload_types(answer)
    for line in answer.split("\r\n"):
        if line.startswith("m=audio "):
            types = [int(t) for t in line.split(" ")[3:] if t.isdigit()]
            for pt in types:
                if pt in red:
                    return pt
                if pt in red.values():
                    return None
    return None


class SpeakingTrack(AIGeneratedAudioTrack):
    """The client's microphone: paced by the agent's track clock (inherited), encoded by `sender`."""

    def __init__(self, sender: OpusSender) -> None:
        super().__init__("bench", count_metrics=False, encode=False)
        self.sender = sender

    async def recv(self) -> OpusPacket:
        pcm = await self.recv_pcm()
        packet = av.Packet(self.sender.encode(pcm))
        packet.pts = (self.frames_sent - 1) * SAMPLES_PER_FRAME
        packet.time_base = TIME_BASE
        return packet


class SpeakingClient(VoiceClient):
    """The test client with its microphone replaced: speech through `sender`, RTP through `uplink`,
    and the agent's RTCP reports about this stream passed to the sender."""

    def __init__(self, base_url: str, sender: OpusSender, uplink: LossyUplink) -> None:
        super().__init__(base_url, record=False)
        self.sender = sender
        self.uplink = uplink
        self.sends_red = False
        self.speaker = SpeakingTrack(sender)
        self.speaker.on_played = self._played

    async def negotiate(self) -> None:
        if self.pc is not None:
            raise RuntimeError("a speaking client negotiates once")
        await super().negotiate()
        assert self.pc is not None and self.pc.remoteDescription is not None
        answer = self.pc.remoteDescription.sdp
        self.sender.remote_fec(answer)
        red_type = red_first(answer) if self.sender.spec.red else None
        if red_type is not None:
            self.uplink.send_red(red_type)
        self.sends_red = red_type is not None
        rtp_sender = self.pc.getSenders()[0]
        self.uplink.install(rtp_sender.transport)
        handle: Callable[[Any], Awaitable[None]] = rtp_sender._handle_rtcp_packet
        sender = self.sender

        async def reported(packet: Any) -> None:
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for block in packet.reports:
                    if block.ssrc == rtp_sender._ssrc:
                        sender.on_report(block.fraction_lost)
            await handle(packet)

        setattr(rtp_sender, "_handle_rtcp_packet", reported)  # noqa: B010 - as above

    def offer_sdp(self, sdp: str) -> str:
        return offer_red(sdp) if self.sender.spec.red else sdp

    async def close(self) -> None:
        await super().close()
        self.sender.close()
