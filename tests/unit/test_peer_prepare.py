"""A call's media prepared before its offer (Peer.prepare, Call.start) and the start-up warm-up,
with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from tests.support import waits
from voice_agent.media import peer as peer_module
from voice_agent.media.ice import LOOPBACK_ONLY, HostCandidatePolicy, gathering_with, parse_networks
from voice_agent.media.peer import Peer, receive_without_decoder_thread, warm_up
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.protocol.sessions import SessionRecord
from voice_agent.protocol.signaling import Offer, SignalingError
from voice_agent.providers.factory import build_providers
from voice_agent.sessions.call import Call
from voice_agent.settings import Settings
from voice_agent.store import MemorySessionStore
from voice_agent.telemetry import metrics


def gauge(g: object) -> float:
    return float(g._value.get())  # type: ignore[attr-defined]


def pairs_selected() -> float:
    samples = [s for m in metrics.ICE_SELECTED_PAIRS.collect() for s in m.samples]
    return sum(s.value for s in samples if s.name.endswith("_total"))


async def drop(_: bytes) -> None:
    return None


def new_peer(**kw: object) -> Peer:
    track = AIGeneratedAudioTrack("test", count_metrics=False)
    return Peer("test", [], track, drop, lambda _: None, host_candidates=LOOPBACK_ONLY, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def offerer() -> AsyncIterator[RTCPeerConnection]:
    """A browser's side: one sendrecv audio section, its candidates in the offer."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    with gathering_with(LOOPBACK_ONLY):
        await pc.setLocalDescription(await pc.createOffer())
    yield pc
    await pc.close()


def gatherer_state(peer: Peer) -> str:
    (transceiver,) = peer.pc.getTransceivers()
    return str(transceiver.sender.transport.transport.iceGatherer.state)


async def test_a_prepared_peer_has_gathered_and_answers_as_one_made_at_the_offer(
    offerer: RTCPeerConnection,
) -> None:
    prepared, late = new_peer(), new_peer()
    try:
        await prepared.prepare()
        await prepared.prepare()  # idempotent: nothing added or gathered twice
        assert len(prepared.pc.getTransceivers()) == 1
        assert gatherer_state(prepared) == "completed"
        assert prepared.pc.remoteDescription is None

        sdp = offerer.localDescription.sdp
        answers = [await prepared.answer(sdp), await late.answer(sdp)]
        for answer in answers:
            assert "a=sendrecv" in answer
            assert "a=candidate:" in answer and " 127.0.0.1 " in answer
            assert "opus/48000/2" in answer
        assert len(prepared.pc.getTransceivers()) == 1  # the offer's audio took the prepared one

        await offerer.setRemoteDescription(RTCSessionDescription(sdp=answers[0], type="answer"))
        await waits.until(
            lambda: prepared.pc.connectionState == offerer.connectionState == "connected",
            what="the prepared peer connected",
        )
    finally:
        await prepared.close()
        await late.close()


async def test_only_an_answering_peer_counts_as_open(offerer: RTCPeerConnection) -> None:
    before = gauge(metrics.PEER_CONNECTIONS)
    spare = new_peer()
    await spare.prepare()
    assert gauge(metrics.PEER_CONNECTIONS) == before
    await spare.close()
    assert gauge(metrics.PEER_CONNECTIONS) == before

    used = new_peer()
    await used.answer(offerer.localDescription.sdp)
    assert gauge(metrics.PEER_CONNECTIONS) == before + 1
    await used.close()
    await used.close()
    assert gauge(metrics.PEER_CONNECTIONS) == before


async def test_a_peer_closed_while_preparing_stops_gathering() -> None:
    peer = new_peer()
    preparing = asyncio.ensure_future(peer.prepare())
    await asyncio.sleep(0)  # the preparation under way
    await peer.close()
    with pytest.raises(asyncio.CancelledError):
        await preparing
    assert peer.pc.connectionState == "closed"


async def test_a_bad_offer_to_a_prepared_peer_is_a_clear_error(offerer: RTCPeerConnection) -> None:
    peer = new_peer()
    try:
        await peer.prepare()
        sdp = offerer.localDescription.sdp.replace("a=ice-ufrag:", "a=ice-ufragx:")
        with pytest.raises(SignalingError) as err:
            await peer.answer(sdp)
        assert "ICE credentials" in str(err.value)
    finally:
        await peer.close()


async def test_warm_up_connects_on_loopback_and_counts_nothing() -> None:
    peers, pairs = gauge(metrics.PEER_CONNECTIONS), pairs_selected()
    took = await warm_up()
    assert took is not None and 0 < took < 3.0
    assert gauge(metrics.PEER_CONNECTIONS) == peers
    assert pairs_selected() == pairs


async def test_warm_up_that_cannot_connect_gives_up_in_time() -> None:
    assert await warm_up(timeout_s=0.0) is None


async def test_warm_up_with_no_address_to_gather_on_gives_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = HostCandidatePolicy(addresses=parse_networks(["192.0.2.1"]))  # TEST-NET-1: not this host's
    monkeypatch.setattr(peer_module, "LOOPBACK_ONLY", nowhere)
    started = time.monotonic()
    assert await warm_up(timeout_s=30.0) is None
    assert time.monotonic() - started < 10.0  # not the timeout


# --- the call ---------------------------------------------------------------------------------------


async def new_call(settings: Settings) -> Call:
    record = SessionRecord.new("prepared-call", settings.session_ttl_s, "agent", settings.pool)

    async def gone(_: Call) -> None:
        return None

    call = Call(record, settings, MemorySessionStore(), build_providers(settings), gone)
    await call.start()
    return call


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    call = await new_call(Settings())  # VOICE_ICE_ADDRESSES=127.0.0.1 (tests/conftest.py)
    yield call
    await call.close()


async def test_a_call_closed_while_its_media_is_gathering_lets_it_finish_then_closes_it() -> None:
    """Cancelled mid-gathering, aioice would leave its STUN lookups to fail unobserved."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a STUN server that never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        call = await new_call(Settings(ice_servers=[{"urls": f"stun:127.0.0.1:{port}"}]))
        call.prepare_media()
        preparing = call._preparing
        assert preparing is not None
        await waits.until(lambda: call._peers_made == 1, what="the preparation under way")
        await call.close("ended")
        assert not preparing.done()  # still gathering, not cancelled
        prepared = await preparing  # aioice gives a STUN server 5 s
        assert prepared is not None
        await waits.until(lambda: prepared.pc.connectionState == "closed", what="the prepared peer closed")


class Link:
    """A client's signaling channel that keeps what it is sent."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    def close_soon(self, code: int, reason: str = "") -> None:
        self.closed = True

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True


async def test_a_call_prepares_its_media_once_its_socket_is_attached(call: Call) -> None:
    assert call._preparing is None  # not at its start: that would hold up the session's creation
    link = Link()
    await call.attach(link)
    assert call._preparing is not None
    assert [e["type"] for e in link.sent[:2]] == ["session", "status"]  # told first, prepared after


async def test_a_call_prepares_its_media_when_asked_once_and_not_when_closed(call: Call) -> None:
    assert call._preparing is None
    call.prepare_media()
    first = call._preparing
    call.prepare_media()
    assert first is not None and call._preparing is first
    await call.close("ended")
    assert call._preparing is None
    call.prepare_media()
    assert call._preparing is None


async def test_a_call_answers_its_first_offer_with_the_peer_it_prepared(
    call: Call, offerer: RTCPeerConnection
) -> None:
    call.prepare_media()
    prepared = await call._preparing  # type: ignore[misc]
    assert prepared is not None and gatherer_state(prepared) == "completed"
    await call.on_offer(Offer(type="offer", sdp=offerer.localDescription.sdp))
    assert call.peer is prepared
    call.prepare_media()  # answered: later offers make their own peers
    assert call._preparing is None
    assert prepared.out_track is call.pipeline.track

    # A later offer (an ICE restart, a renegotiation) gets a fresh peer with a fresh track.
    again = RTCPeerConnection()
    try:
        again.addTransceiver("audio", direction="sendrecv")
        with gathering_with(LOOPBACK_ONLY):
            await again.setLocalDescription(await again.createOffer())
        await call.on_offer(Offer(type="offer", sdp=again.localDescription.sdp))
        assert call.peer is not prepared and call.peer is not None
        assert prepared.pc.connectionState == "closed"
        assert call.peer.out_track is call.pipeline.track
    finally:
        await again.close()


async def test_a_call_closed_before_any_offer_closes_the_peer_it_prepared(call: Call) -> None:
    call.prepare_media()
    prepared = await call._preparing  # type: ignore[misc]
    assert prepared is not None
    await call.close("ended")
    assert prepared.pc.connectionState == "closed"
    assert call.peer is None


async def test_a_decoding_receiver_hears_audio_without_a_decoder_thread() -> None:
    """The agent's own decoder takes every packet, so aiortc's thread is never started (nor joined)."""
    heard: list[bytes] = []

    async def hear(pcm: bytes) -> None:
        heard.append(pcm)

    sender = RTCPeerConnection()
    sender.addTrack(AudioStreamTrack())  # 20 ms frames of silence, Opus-encoded by aiortc
    with gathering_with(LOOPBACK_ONLY):
        await sender.setLocalDescription(await sender.createOffer())
    peer = Peer(
        "test",
        [],
        AIGeneratedAudioTrack("test", count_metrics=False),
        hear,
        lambda _: None,
        host_candidates=LOOPBACK_ONLY,
    )
    try:
        answer = await peer.answer(sender.localDescription.sdp)
        await sender.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await waits.until(lambda: len(heard) >= 5, what="the sender's audio decoded")
        (transceiver,) = peer.pc.getTransceivers()
        assert transceiver.receiver._RTCRtpReceiver__decoder_thread is None
    finally:
        await peer.close()
        await sender.close()
    assert transceiver.receiver._RTCRtpReceiver__started


async def test_the_receiver_shape_the_threadless_start_relies_on_is_there() -> None:
    """A canary: with another aiortc the receiver's private fields may move, and the agent falls back
    to aiortc's own start (correct, but a thread per call again)."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        assert receive_without_decoder_thread(receiver)
        assert "receive" in vars(receiver)
        assert not receive_without_decoder_thread(object())
    finally:
        await pc.close()
