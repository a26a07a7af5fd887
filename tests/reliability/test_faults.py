"""Faults on loopback during real calls: a provider failing mid-stream, lost packets on the media
path, a client process killed without closing anything. (Redis killed and restarted mid-call and
agent kill -9 with resume are in tests/redis: test_outage.py, test_failover.py.)"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiortc.rtp import is_rtcp

from bench.sender import RedWrapper, offer_red, red_first
from tests.providers.conftest import KEYS
from tests.providers.fakes.base import Fault
from tests.providers.test_cloud_call import REPLY, Cloud, cloud_agent
from tests.support import waits
from tests.support.procs import ROOT, AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.speech import overlap, sounds_like, synth, transcribe
from tests.support.ws import Signaling
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability-faults")]

# 10% loss, evenly spread: the agent repairs each lost packet from the next one's in-band FEC
# (docs/reliability.md has the figures at 5, 10 and 20%).
LOSS_EVERY = int(os.environ.get("VOICE_TEST_LOSS_EVERY", "10"))
# Packets lost in a row each time (bursts: FEC repairs the last of a burst, PLC the ones before it).
LOSS_BURST = int(os.environ.get("VOICE_TEST_LOSS_BURST", "1"))
# An RTP packet larger than this carries speech: the agent's and the test client's silence is a single
# small Opus packet (a few bytes of payload after the 12-byte header and its extensions).
SPEECH_PACKET_BYTES = 60


GRACE_S = 1.0  # voice_reconnect_grace_s: how long a call outlives its client's socket


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with cloud_agent(tmp_path_factory.mktemp("cloud"), voice_reconnect_grace_s=f"{GRACE_S:g}") as c:
        yield c


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s=f"{GRACE_S:g}") as proc:
        yield proc


until = functools.partial(waits.until, timeout=20.0)


async def released(url: str) -> bool:
    m = await scrape(url)
    names = (
        "webrtc_websocket_connections_total",
        "webrtc_peer_connections_total",
        "webrtc_active_sessions_total",
    )
    return all(m[n] == 0 for n in names)


async def connected(url: str, client: VoiceClient | None = None) -> VoiceClient:
    """A call whose media is up on both ends: the agent says "listening" once its side connects.

    The client's side can connect first; a turn sent before the agent's media is live is answered as
    for a text-only client (the turn ends at the last word), and a TTS failure then comes after it.
    """
    client = client or VoiceClient(url)
    await client.create_session()
    await client.connect()
    await client.wait_media()
    await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", timeout=10)
    return client


async def turn(client: VoiceClient, text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A typed turn: (errors during it, its final reply)."""
    mark = len(client.events)
    await client.send({"type": "text", "text": text})
    reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark)
    await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "listening", 30, mark)
    return [e for e in client.events[mark:] if e["type"] == "error"], reply


@pytest.mark.parametrize(
    ("fake", "fault", "code"),
    [
        ("chat", Fault(mode="drop", after=3), "llm_dropped"),
        ("chat", Fault(mode="malformed", after=2), "llm_bad_response"),
        ("elevenlabs", Fault(mode="drop", after=2), "tts_dropped"),
    ],
)
async def test_provider_failing_mid_stream_is_an_error_event_and_the_call_goes_on(
    cloud: Cloud, fake: str, fault: Fault, code: str
) -> None:
    client = await connected(cloud.agent.url)
    try:
        getattr(cloud, fake).fail_next(fault)
        errors, _ = await turn(client, "what time is it")
        assert [e["code"] for e in errors] == [code], errors
        assert all(k not in e["message"] for e in errors for k in KEYS)
        errors, reply = await turn(client, "what time is it")
        assert not errors and reply["text"] == REPLY, (errors, reply)
        await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
    finally:
        await client.close()
    await until(lambda: released(cloud.agent.url), what="gauges back to zero")


async def test_stt_stream_dropped_mid_utterance_is_replayed_without_the_user_noticing(cloud: Cloud) -> None:
    cloud.deepgram.transcripts = ["What time is it?"]
    client = await connected(cloud.agent.url)
    pcm, rate = synth("hello, what time is it")
    try:
        streams = len(cloud.deepgram.records)
        cloud.deepgram.fail_next(Fault(mode="drop", after=20))
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        assert final["text"] == "What time is it?"
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        assert reply["text"] == REPLY
        assert not [e for e in client.events if e["type"] == "error"]
        assert len(cloud.deepgram.records) >= streams + 2, "the dropped stream was reopened"
    finally:
        await client.close()
    await until(lambda: released(cloud.agent.url), what="gauges back to zero")


def drop_outbound_rtp(client: VoiceClient, every: int, burst: int = 1) -> list[int]:
    """Lose `burst` in `every` of the client's outgoing RTP packets, never RTCP; returns the running
    [sent, dropped] counts of packets from the first of speech on. Only the client's network is made
    lossy: the agent's receive path is untouched.

    The pattern starts at the first packet of speech (the track's silence is one tiny packet; speech is
    several times its size), so the same sounds are lost in every run. Counted from the random initial
    sequence number instead, which sounds were lost changed from run to run, and some phases cost
    "what time is it" its words (heard as "hello platonic eight" in one run of seven or eight)."""
    assert client.pc is not None
    dtls = client.pc.getSenders()[0].transport
    send = dtls._send_rtp
    counts = [0, 0]  # from the first packet of speech on

    async def lossy(data: bytes) -> None:
        if not is_rtcp(data) and (counts[0] or len(data) > SPEECH_PACKET_BYTES):
            counts[0] += 1
            if (counts[0] - 1) % every < burst:
                counts[1] += 1
                return
        await send(data)

    dtls._send_rtp = lossy
    return counts


async def lossy_turn(url: str) -> tuple[str, list[int]]:
    """A spoken turn while the client's uplink loses packets: (what the agent heard, [sent, dropped]).
    The agent's reply (on the loss-free downlink) must be complete and intelligible whatever it heard."""
    client = await connected(url)
    try:
        counts = drop_outbound_rtp(client, LOSS_EVERY, LOSS_BURST)
        pcm, rate = synth("hello, what time is it")
        said_at = time.monotonic()  # the call's first words: all agent audio after this is the reply
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        # Not from the reply event: events and audio travel apart (WebSocket, RTP), and under load
        # the event can trail the audio's start by more than any fixed lead.
        heard = transcribe(client.recording.pcm_between(said_at), 48000)
        assert reply["text"] and sounds_like(reply["text"], heard) >= 0.5, (reply["text"], heard)
        assert client.pc is not None and client.pc.connectionState == "connected"
        sent, dropped = counts
        assert sent > 50 and dropped >= sent * LOSS_BURST // LOSS_EVERY - LOSS_BURST, counts
        return str(final["text"]), counts
    finally:
        await client.close()
        await until(lambda: released(url), what="gauges back to zero")


async def test_lost_packets_on_the_uplink_the_call_survives_and_answers(agent: AgentProcess) -> None:
    heard, _ = await lossy_turn(agent.url)
    assert heard, "a turn was recognised despite the loss"


async def test_lost_packets_on_the_uplink_the_user_is_still_understood(agent: AgentProcess) -> None:
    repaired = (await scrape(agent.url))["voice_inbound_concealed_frames_total"]
    heard, counts = await lossy_turn(agent.url)
    assert overlap("time is it", heard) >= 0.66, (heard, counts)
    repaired = (await scrape(agent.url))["voice_inbound_concealed_frames_total"] - repaired
    assert repaired >= counts[1] - LOSS_BURST, f"the agent repaired {repaired} of {counts[1]} lost packets"


class RedClient(VoiceClient):
    """Offers RED as Chromium does (bench/sender.py), so the agent's answer can ask for it."""

    def offer_sdp(self, sdp: str) -> str:
        return offer_red(sdp)


async def test_a_browsers_red_rebuilds_each_lost_packet_exactly(agent: AgentProcess) -> None:
    """RED from the first word: one packet in five lost, each rebuilt from the next one's copy."""
    before = await scrape(agent.url)
    client = await connected(agent.url, RedClient(agent.url))
    try:
        assert client.pc is not None and client.pc.remoteDescription is not None
        red_type = red_first(client.pc.remoteDescription.sdp)
        assert red_type is not None, "the answer lists RED before Opus"
        wrap = RedWrapper(red_type).wrap
        dtls = client.pc.getSenders()[0].transport
        send = dtls._send_rtp
        counts = [0, 0]  # from the first packet of speech on: [sent, dropped]

        async def red_and_lossy(data: bytes) -> None:
            if not is_rtcp(data):
                speech = counts[0] or len(data) > SPEECH_PACKET_BYTES
                data = wrap(data)  # the sender wraps every packet; the network loses some
                if speech:
                    counts[0] += 1
                    if counts[0] % 5 == 0:
                        counts[1] += 1
                        return
            await send(data)

        dtls._send_rtp = red_and_lossy
        pcm, rate = synth("hello, what time is it")
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        assert overlap("time is it", str(final["text"])) >= 0.66, (final["text"], counts)
    finally:
        await client.close()
        await until(lambda: released(agent.url), what="gauges back to zero")
    after = await scrape(agent.url)
    rebuilt = after["voice_inbound_rebuilt_frames_total"] - before["voice_inbound_rebuilt_frames_total"]
    assert counts[1] >= 10 and rebuilt >= counts[1] - 1, f"{rebuilt} of {counts[1]} lost packets rebuilt"


async def test_client_killed_without_closing_is_cleaned_up_and_resumable(agent: AgentProcess) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.vanishing_client",
        agent.url,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        sid = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert sid, "client never finished its first turn"
        during = await scrape(agent.url)
        assert during["webrtc_peer_connections_total"] == 1
        assert during["webrtc_websocket_connections_total"] == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    # Its sockets died with it, so the agent's grace started no later than now (docs/reliability.md).
    await waits.until(
        lambda: released(agent.url),
        timeout=GRACE_S + waits.SCHEDULING_SLACK_S,
        what="the vanished client's call released within the reconnect grace",
    )
    async with httpx.AsyncClient(base_url=agent.url, timeout=5) as http:
        assert (await http.get(f"/v2/sessions/{sid}")).json()["status"] == "disconnected"
    again = await Signaling.open(agent.url, sid)
    session = (await again.next_event(lambda e: e["type"] == "session"))["session"]
    assert session["history"][0]["content"] == "remember the word banana", "history survives the crash"
    await again.send({"type": "end"})
    await again.closed()
    assert "Traceback" not in await asyncio.to_thread(agent.logs)
