"""aiortc peer connection per session: the answer, ICE candidates both ways, inbound audio.

What an answer needs that no offer says (the certificate, the outbound track's transceiver, the ICE
candidates: sockets bound, host addresses read) is made by `prepare`, which a call runs as soon as it
starts, so the offer finds it done and its answer costs only the offer's own work. `warm_up` sets up
and tears down one connection on loopback before an agent serves: the first in a process costs
several times what later ones do.

Inbound Opus is decoded on arrival by our own libopus decoder, straight to 16 kHz mono in exact
20 ms slices (the only rate the pipeline works at), with losses repaired by FEC and PLC
(receive.DecodingAudioBuffer). With a reorder buffer configured (VOICE_JITTER_PREFETCH_FRAMES
> 0), or without a loadable libopus, aiortc decodes instead, and the frames are converted and
crudely concealed here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from voice_agent.media import opus
from voice_agent.media.audio import InboundConverter, LossConcealer
from voice_agent.media.ice import (
    LOOPBACK_ONLY,
    HostCandidatePolicy,
    gathering_with,
    scope_of,
    selected_pair,
)
from voice_agent.media.receive import (
    DecodingAudioBuffer,
    advertise_inband_fec,
    install_buffer,
    tune_receivers,
)
from voice_agent.media.red import accept_red, red_payload_types
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.protocol.signaling import (
    ErrorCode,
    SignalingError,
    check_offer_sdp,
    opus_payload_types,
    parse_candidate,
)
from voice_agent.telemetry import metrics

log = logging.getLogger(__name__)


def local_candidates(sdp: str) -> list[dict[str, Any]]:
    """Candidates of our answer as trickle messages (aiortc gathers before answering)."""
    out: list[dict[str, Any]] = []
    mid: str | None = None
    mline = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=candidate:"):
            out.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": max(mline, 0)})
    return out


_RECEIVER = "_RTCRtpReceiver__"


def receive_without_decoder_thread(receiver: Any, red_types: Iterable[int] = ()) -> bool:
    """Start an audio receiver whose buffer decodes (DecodingAudioBuffer) without aiortc's decoder
    thread, which would idle all call long: that buffer hands it nothing to decode.

    Starting that thread blocks the event loop until the OS has run it, and stopping it (the peer's
    close) blocks until the OS has run it again: well under a millisecond on an idle machine, several
    under load (another thread holding the GIL, a starting agent on the same cores), for every call on
    the agent, twice per peer. The receiver then starts as aiortc's `receive` does, less the thread;
    aiortc's stop already skips a thread that never started. False, leaving aiortc's own start, when
    the receiver's private shape is not the one this was written against. `red_types`: RED payload
    types the answer accepts (media/red.py), which aiortc does not know: received all the same."""
    fields = ("started", "codecs", "rtx_ssrc", "transport", "rtcp_task", "decoder_thread")
    if not all(hasattr(receiver, _RECEIVER + f) for f in fields) or not hasattr(receiver, "_run_rtcp"):
        return False

    async def receive(parameters: Any) -> None:
        if getattr(receiver, _RECEIVER + "started"):
            return
        codecs: dict[int, Any] = getattr(receiver, _RECEIVER + "codecs")
        rtx_ssrc: dict[int, int] = getattr(receiver, _RECEIVER + "rtx_ssrc")
        red = [RTCRtpCodecParameters("audio/red", 48_000, 2, pt) for pt in red_types]
        parameters = dataclasses.replace(parameters, codecs=[*parameters.codecs, *red])
        for codec in parameters.codecs:
            codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        getattr(receiver, _RECEIVER + "transport")._register_rtp_receiver(receiver, parameters)
        setattr(receiver, _RECEIVER + "rtcp_task", asyncio.ensure_future(receiver._run_rtcp()))
        setattr(receiver, _RECEIVER + "started", True)

    receiver.receive = receive
    return True


AudioSink = Callable[[bytes], Awaitable[None]]
# Decoded audio waiting for the pipeline; beyond this (5 s) the pipeline has stalled and the oldest
# audio is dropped rather than kept without bound.
INBOUND_BACKLOG_FRAMES = 250


class Peer:
    """One RTCPeerConnection and the task that feeds its inbound audio to the pipeline."""

    def __init__(
        self,
        session_id: str,
        ice_servers: list[dict[str, Any]],
        out_track: AIGeneratedAudioTrack,
        on_audio: AudioSink,
        on_state: Callable[[str], None],
        transport_policy: Literal["all", "relay"] = "all",
        jitter_frames: int = 0,
        host_candidates: HostCandidatePolicy | None = None,
        count_metrics: bool = True,
        accept_red: bool = True,
    ) -> None:
        self._jitter_frames = jitter_frames
        self._accept_red = accept_red
        self._host_candidates = host_candidates
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ]
        self.session_id = session_id
        config = RTCConfiguration(
            iceServers=servers or None, iceTransportPolicy=RTCIceTransportPolicy(transport_policy)
        )
        self.pc = RTCPeerConnection(config)
        self.out_track = out_track
        self._on_audio = on_audio
        self._on_state = on_state
        self._reader: asyncio.Task[None] | None = None
        self._track: MediaStreamTrack | None = None
        self._decoders: list[DecodingAudioBuffer] = []
        self._decoded: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False
        self._prepared: asyncio.Task[None] | None = None
        # Counted once it answers: a prepared peer no offer has reached yet serves no call.
        self._count_metrics = count_metrics
        self._counted = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        if self.pc.connectionState == "connected" and self._count_metrics:
            self._count_selected_pair()
        self._on_state(self.pc.connectionState)

    def _count_selected_pair(self) -> None:
        """Which network the media took: an operator's check of the ICE settings, and the tests' guard."""
        pair = selected_pair(self.pc)
        if pair is None:
            return
        local, remote = pair
        labels = {"local": scope_of(local.host), "remote": scope_of(remote.host), "type": local.type}
        metrics.ICE_SELECTED_PAIRS.labels(**labels).inc()
        log.info("ice pair selected", extra={"session_id": self.session_id, **labels})

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._track is None:
            self._track = track

    def _start_reading(self) -> None:
        if self._reader is not None:
            return
        if self._decoders:
            self._reader = asyncio.create_task(self._read_decoded(), name=f"audio-in-{self.session_id}")
        elif self._track is not None:
            self._reader = asyncio.create_task(self._read(self._track), name=f"audio-in-{self.session_id}")

    def _push(self, pcm: bytes) -> None:
        if self._decoded.qsize() >= INBOUND_BACKLOG_FRAMES:
            self._decoded.get_nowait()
            metrics.INBOUND_OVERFLOW.inc()
        self._decoded.put_nowait(pcm)

    async def _read_decoded(self) -> None:
        while True:
            await self._on_audio(await self._decoded.get())

    async def _read(self, track: MediaStreamTrack) -> None:
        converter = InboundConverter()
        concealer = LossConcealer()
        expected: int | None = None  # RTP timestamp (48 kHz) of the frame that should come next
        try:
            while True:
                frame = await track.recv()
                pts, samples = getattr(frame, "pts", None), getattr(frame, "samples", 0)
                if expected is not None and pts is not None and samples:
                    missing = (pts - expected) // samples
                    if 0 < missing < 50:  # a lost packet or a few; longer is DTX or a restart
                        metrics.INBOUND_CONCEALED.inc(missing)
                        for chunk in concealer.conceal(missing):
                            await self._on_audio(chunk)
                expected = pts + samples if pts is not None else None
                for chunk in converter.push(frame):  # type: ignore[arg-type]
                    concealer.remember(chunk)
                    await self._on_audio(chunk)
        except MediaStreamError:
            return

    async def prepare(self) -> None:
        """The outbound track on its transceiver and the ICE candidates gathered, before any offer.

        aiortc matches an offer's audio section to an audio transceiver with no mid yet, so the
        answer negotiates exactly as when the track is added after the offer; the gathering that
        setLocalDescription would do is found done. Idempotent; `answer` calls it too."""
        if self._prepared is None:
            self._prepared = asyncio.create_task(self._prepare(), name=f"peer-prepare-{self.session_id}")
        await self._prepared

    async def _prepare(self) -> None:
        self.pc.addTrack(self.out_track)
        for transceiver in self.pc.getTransceivers():
            with gathering_with(self._host_candidates):
                await transceiver.sender.transport.transport.iceGatherer.gather()

    async def answer(self, offer_sdp: str) -> str:
        sdp = check_offer_sdp(offer_sdp)
        try:
            await self.prepare()
        except Exception as exc:
            raise SignalingError(
                ErrorCode.INVALID_SDP, f"cannot answer offer: {type(exc).__name__}: {exc!s}"[:300]
            ) from None
        if self._count_metrics and not self._counted:
            self._counted = True
            metrics.PEER_CONNECTIONS.inc()
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises a zoo of types on malformed SDP
            raise SignalingError(
                ErrorCode.INVALID_SDP, f"cannot apply offer: {type(exc).__name__}: {exc!s}"[:300]
            ) from None
        # The prepared transceiver exists whatever the offer holds: only those it matched count.
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio" and t.mid is not None]
        if not audio:
            raise SignalingError(ErrorCode.INVALID_SDP, "offer has no usable audio section")
        # RED is accepted only where our buffer and receive take it: anywhere else its packets
        # would be dropped as an unknown payload type, and the call go unheard.
        red: dict[int, int] = {}
        if self._jitter_frames == 0 and opus.usable():
            types = opus_payload_types(sdp)
            red = red_payload_types(sdp) if self._accept_red else {}
            for t in audio:
                decoder = DecodingAudioBuffer(types, self._push, red_types=red)
                if install_buffer(t.receiver, decoder):
                    self._decoders.append(decoder)
                    if not receive_without_decoder_thread(t.receiver, red):
                        red = {}
                else:
                    red = {}
        else:
            if self._jitter_frames == 0:
                metrics.OPUS_FALLBACKS.inc()
            tune_receivers(self.pc, self._jitter_frames)
        self._start_reading()
        try:
            with gathering_with(self._host_candidates):
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise SignalingError(
                ErrorCode.INVALID_SDP, f"cannot answer offer: {type(exc).__name__}: {exc!s}"[:300]
            ) from None
        sdp = advertise_inband_fec(str(self.pc.localDescription.sdp))
        if red:
            sdp = accept_red(sdp, red)
        if self._host_candidates is not None and self._host_candidates.announced is not None:
            sdp = self._host_candidates.announce(sdp, self._gathered_hosts())
        return sdp

    def _gathered_hosts(self) -> list[str]:
        return [
            c.ip
            for t in self.pc.getTransceivers()
            for c in t.receiver.transport.transport.iceGatherer.getLocalCandidates()
            if c.type == "host"
        ]

    async def add_candidate(self, msg: dict[str, Any]) -> None:
        candidate = parse_candidate(msg)
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise SignalingError(
                ErrorCode.INVALID_CANDIDATE, f"{type(exc).__name__}: {exc!s}"[:200]
            ) from None

    @property
    def has_remote(self) -> bool:
        return self.pc.remoteDescription is not None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._counted:
            metrics.PEER_CONNECTIONS.dec()
        if self._prepared is not None and not self._prepared.done():
            self._prepared.cancel()
            await asyncio.gather(self._prepared, return_exceptions=True)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.pc.close()
        for decoder in self._decoders:
            decoder.close()


# A warm-up that has not connected by then will not: the agent serves without it.
WARM_UP_TIMEOUT_S = 3.0


async def warm_up(timeout_s: float = WARM_UP_TIMEOUT_S) -> float | None:
    """One peer connection offered, answered, connected (ICE, DTLS, SRTP) and closed on loopback.

    The first connection in a process pays for what every later one reuses (the crypto library's
    first certificate and DTLS context, the SDP, ICE and SRTP paths): on the event loop, several
    times a warm one's cost, and a fresh agent would spend it on the first calls it takes, in a
    rollout the calls moved to it. Never counted in the metrics; seconds it took, or None when it
    did not connect (logged; the agent serves anyway, only colder)."""
    started = time.perf_counter()

    async def drop(_: bytes) -> None:
        return None

    offerer = RTCPeerConnection()
    answerer = Peer(
        "warm-up",
        [],
        AIGeneratedAudioTrack("warm-up", count_metrics=False),
        drop,
        lambda _: None,
        host_candidates=LOOPBACK_ONLY,
        count_metrics=False,
    )
    settled = asyncio.Event()

    def changed() -> None:
        states = {offerer.connectionState, answerer.pc.connectionState}
        if states == {"connected"} or "failed" in states:
            settled.set()

    offerer.on("connectionstatechange", changed)
    answerer.pc.on("connectionstatechange", changed)
    try:
        async with asyncio.timeout(timeout_s):
            offerer.addTransceiver("audio", direction="sendrecv")
            with gathering_with(LOOPBACK_ONLY):
                await offerer.setLocalDescription(await offerer.createOffer())
            if "a=candidate:" not in offerer.localDescription.sdp:
                raise ConnectionError("no loopback address to connect on")  # rather than wait it out
            answer = await answerer.answer(offerer.localDescription.sdp)
            await offerer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await settled.wait()
        if answerer.pc.connectionState != "connected":
            raise ConnectionError("the loopback connection failed")
    except Exception as exc:  # never the reason an agent does not start
        log.warning("media warm-up did not connect", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        return None
    finally:
        await answerer.close()
        await offerer.close()
    return time.perf_counter() - started
