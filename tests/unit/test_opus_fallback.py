"""Without a loadable libopus a call still has audio: aiortc decodes it, with a warning and a metric."""

from __future__ import annotations

import logging

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from voice_agent.media import opus
from voice_agent.media.peer import Peer
from voice_agent.media.receive import ImmediateAudioBuffer, current_prefetch
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.telemetry import metrics


@pytest.fixture
def no_libopus(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise opus.OpusError("libopus not found (made to fail by the test)")

    monkeypatch.setattr(opus, "libopus", missing)
    monkeypatch.setattr(opus, "_warned", False)


def test_a_missing_libopus_is_reported_once_not_raised(
    no_libopus: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=opus.__name__):
        assert opus.usable() is False
        assert opus.usable() is False
    warnings = [r for r in caplog.records if r.name == opus.__name__]
    assert len(warnings) == 1
    assert "libopus unavailable" in warnings[0].getMessage()
    assert "made to fail by the test" in warnings[0].getMessage()


def test_libopus_loads_here() -> None:
    """The fallback is for broken installs; this environment (and the agent image) has libopus."""
    assert opus.usable() is True


async def test_a_call_without_libopus_is_answered_and_decoded_by_aiortc(no_libopus: None) -> None:
    async def sink(pcm: bytes) -> None:
        pass

    client = RTCPeerConnection()
    peer = Peer("s", [], AIGeneratedAudioTrack("s", count_metrics=False), sink, lambda state: None)
    try:
        client.addTransceiver("audio", direction="sendrecv")
        await client.setLocalDescription(await client.createOffer())
        before = metrics.OPUS_FALLBACKS._value.get()
        answer = await peer.answer(client.localDescription.sdp)
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        assert metrics.OPUS_FALLBACKS._value.get() - before == 1
        assert peer._decoders == [], "no libopus decoder was made"
        receivers = [t.receiver for t in peer.pc.getTransceivers() if t.kind == "audio"]
        assert receivers
        for receiver in receivers:
            assert current_prefetch(receiver) == 0
            assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, ImmediateAudioBuffer)
    finally:
        await peer.close()
        await client.close()
