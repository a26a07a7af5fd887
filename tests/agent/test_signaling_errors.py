"""Bad signaling input gets a clear `error` event and the session carries on (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection

from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.ws import Signaling
from voice_agent.protocol.signaling import CLOSE_ACTIONS, parse_event
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("signaling-errors")]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("agent"), voice_reconnect_grace_s="30") as proc:
        yield proc


@pytest.fixture
async def sig(agent: AgentProcess) -> AsyncIterator[Signaling]:
    async with httpx.AsyncClient(base_url=agent.url) as http:
        session = (await http.post("/v2/sessions")).json()
        s = await Signaling.open(agent.url, session["id"])
        await s.next_event(lambda e: e["type"] == "session")
        yield s
        await s.close()
        await http.delete(f"/v2/sessions/{session['id']}")


async def real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ('{"type": "offer", "sdp": "v=0', "invalid_json"),
        ("[1, 2, 3]", "invalid_message"),
        ('"just a string"', "invalid_message"),
        ('{"sdp": "v=0"}', "invalid_message"),
        ('{"type": 7}', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "offer"}', "missing_field"),
        ('{"type": "text"}', "missing_field"),
        ('{"type": "ice-candidate"}', "missing_field"),
        ('{"type": "answer", "sdp": "v=0"}', "unexpected_answer"),
        ('{"type": "offer", "sdp": 42}', "invalid_sdp"),
        ('{"type": "offer", "sdp": "hello"}', "invalid_sdp"),
        ('{"type": "offer", "sdp": "v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\ns=-\\r\\n"}', "invalid_sdp"),
        ("[" * 100_000 + "]" * 100_000, "frame_too_large"),
        ("[" * 20_000 + "]" * 20_000, "invalid_json"),
        ('{"type": "ice-candidate", "candidate": "candidate:garbage", "sdpMid": "0"}', "invalid_candidate"),
        ('{"type": "ice-candidate", "candidate": 5, "sdpMid": "0"}', "invalid_candidate"),
        (
            '{"type": "ice-candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}',
            "invalid_candidate",
        ),
    ],
)
async def test_malformed_message_gets_error_and_session_survives(
    sig: Signaling, frame: str, code: str
) -> None:
    await sig.send(frame)
    err = await sig.error(code)
    assert err["message"], err
    await sig.ping("still-alive")


async def test_binary_and_oversize_frames_are_refused(sig: Signaling) -> None:
    await sig.send(b'{"type": "ping"}')
    await sig.error("invalid_message")
    await sig.send(json.dumps({"type": "text", "text": "x" * (70 * 1024)}))
    await sig.error("frame_too_large")
    await sig.ping(1)


async def test_invalid_utf8_text_is_refused_not_fatal(agent: AgentProcess) -> None:
    async with httpx.AsyncClient(base_url=agent.url) as http:
        sid = (await http.post("/v2/sessions")).json()["id"]
        s = await Signaling.open(agent.url, sid)
        # A text frame with invalid UTF-8 is a protocol violation: the socket closes (1007),
        # but the agent and the session do not: a new socket resumes the same session.
        await s.ws.send(b"\xff\xfe{", text=True)
        assert await s.closed() == 1007
        again = await Signaling.open(agent.url, sid)
        event = await again.next_event(lambda e: e["type"] == "session")
        assert event["session"]["id"] == sid
        await again.ping("after-utf8")
        await again.close()
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda sdp: sdp.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 ZZ:"), id="bad-fp"
        ),
        pytest.param(
            lambda sdp: "\r\n".join(ln for ln in sdp.split("\r\n") if not ln.startswith("a=fingerprint")),
            id="no-fingerprint",
        ),
        pytest.param(lambda sdp: sdp.split("m=audio")[0], id="no-m-line"),
        pytest.param(
            lambda sdp: (
                "\r\n".join(
                    "m=audio 9 UDP/TLS/RTP/SAVPF 127" if ln.startswith("m=audio") else ln
                    for ln in sdp.split("\r\n")
                    if not ln.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb"))
                )
                + "a=rtpmap:127 FOOCODEC/1\r\n"
            ),
            id="absurd-codec",
        ),
        pytest.param(
            lambda sdp: sdp.replace(
                "a=mid:0",
                "a=mid:0\r\n"
                + "".join(
                    f"a=candidate:{i} 1 udp 1 127.0.0.1 {10000 + i} typ host\r\n" for i in range(3000)
                ).rstrip("\r\n"),
            ),
            id="thousands-of-candidates",
        ),
        pytest.param(lambda sdp: sdp.replace("a=ice-ufrag:", "a=ice-ufrag-broken:"), id="no-ice-ufrag"),
        pytest.param(lambda sdp: sdp[: len(sdp) // 2], id="truncated"),
    ],
)
async def test_hostile_offer_gets_invalid_sdp_and_a_good_offer_still_works(
    sig: Signaling, mutate: object
) -> None:
    good = await real_offer()
    bad = mutate(good)  # type: ignore[operator]
    await sig.send({"type": "offer", "sdp": bad})
    err = await sig.next_event(lambda e: e["type"] == "error", timeout=15)
    assert err["code"] in {"invalid_sdp", "frame_too_large"}, err
    await sig.send({"type": "offer", "sdp": good})
    answer = await sig.next_event(lambda e: e["type"] == "answer", timeout=15)
    assert answer["sdp"].startswith("v=0")


async def test_candidates_before_offer_are_buffered_not_rejected(sig: Signaling) -> None:
    cand = {"type": "ice-candidate", "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"}
    await sig.send({**cand, "sdpMid": "0", "sdpMLineIndex": 0})
    await sig.send({"type": "offer", "sdp": await real_offer()})
    await sig.next_event(lambda e: e["type"] == "answer", timeout=15)
    assert not [e for e in sig.events if e["type"] == "error"], sig.events


async def test_flood_is_rate_limited_once_and_connection_recovers(sig: Signaling) -> None:
    await asyncio.gather(*(sig.send({"type": "ping", "ts": i}) for i in range(600)))
    await sig.error("rate_limited")
    # Tokens refill at the configured rate; poll with a bounded number of pings.
    for attempt in range(50):
        try:
            await sig.ping(f"recovered-{attempt}", timeout=0.5)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail("socket never recovered from the flood")
    again = [e for e in sig.events if e.get("code") == "rate_limited"]
    # 600 sent against a burst of 200 refuses ~400, and the pings that found the bucket still empty
    # are refused too; a token let through mid-flood does not end it (docs/reliability.md: a flood
    # ends after 1 s without refused messages). One flood, one report.
    assert not again, f"{1 + len(again)} rate_limited errors for one flood"


async def test_unknown_session_closes_4404(agent: AgentProcess) -> None:
    s = await Signaling.open(agent.url, "no-such-session")
    await s.error("unknown_session")
    assert await s.closed() == 4404


async def test_second_socket_replaces_first_with_4409(agent: AgentProcess) -> None:
    async with httpx.AsyncClient(base_url=agent.url) as http:
        sid = (await http.post("/v2/sessions")).json()["id"]
        first = await Signaling.open(agent.url, sid)
        await first.next_event(lambda e: e["type"] == "session")
        second = await Signaling.open(agent.url, sid)
        await second.next_event(lambda e: e["type"] == "session")
        await first.error("replaced")
        assert await first.closed() == 4409
        await second.ping("new-owner")
        await second.send({"type": "end"})
        assert await second.closed() is not None
        assert (await http.get(f"/v2/sessions/{sid}")).status_code == 404, "an ended session is gone"


async def test_other_sessions_unaffected_by_a_misbehaving_one(agent: AgentProcess, sig: Signaling) -> None:
    async with httpx.AsyncClient(base_url=agent.url) as http:
        sid = (await http.post("/v2/sessions")).json()["id"]
        good = await Signaling.open(agent.url, sid)
        await good.next_event(lambda e: e["type"] == "session")
        await asyncio.gather(*(sig.send("{garbage") for _ in range(300)))
        await good.ping("unaffected")
        await good.close()
        await http.delete(f"/v2/sessions/{sid}")


async def test_every_event_of_a_call_is_a_protocol_event(agent: AgentProcess) -> None:
    """The pipeline builds its events as plain dicts: hold them to the schema the web client is typed by."""
    seen: list[dict[str, object]] = []

    def until(kind: str, final: bool = False) -> Callable[[dict[str, object]], bool]:
        return lambda e: (
            seen.append(e) is None and e["type"] == kind and (not final or e.get("final") is True)
        )

    async with httpx.AsyncClient(base_url=agent.url) as http:
        sid = (await http.post("/v2/sessions")).json()["id"]
        s = await Signaling.open(agent.url, sid)
        await s.next_event(until("session"))
        await s.send({"type": "offer", "sdp": await real_offer()})
        await s.next_event(until("answer"), timeout=15)
        await s.send({"type": "text", "text": "hello"})
        await s.next_event(until("ai_response", final=True), timeout=30)
        await s.send({"type": "ping", "ts": {"nested": [1, "two"]}})
        await s.next_event(until("pong"))  # the turn's metrics and status were sent before the pong
        await s.send({"type": "teleport"})
        await s.next_event(until("error"))
        await s.send({"type": "end"})
        await s.closed()
    kinds = {e["type"] for e in seen}
    assert {
        "session",
        "answer",
        "ice-candidate",
        "status",
        "ai_response",
        "metrics",
        "pong",
        "error",
    } <= kinds
    for event in seen:
        assert parse_event(event).wire() == event, event


def test_the_close_table_in_the_docs_is_the_one_the_clients_follow() -> None:
    """docs/api.md's "Client does" column names, for every code, the action of CLOSE_ACTIONS."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    rows = {
        line.split("|")[1].strip(): line
        for line in doc.splitlines()
        if line.startswith("| 1") or line.startswith("| 4")
    }
    for code, action in CLOSE_ACTIONS.items():
        row = rows.get(str(code.value), "")
        assert row.rstrip(" |").split("|")[-1].strip().startswith(f"`{action.value}`"), (code, row)


async def test_heard_latency_is_taken_once_per_reply_and_bad_reports_are_refused(agent: AgentProcess) -> None:
    """`client_metrics`: a report before any reply, a second one for the same reply, and impossible
    values are refused and never recorded; one report per reply lands in the pool's histogram."""
    count = 'voice_client_voice_to_voice_seconds_count{pool="default"}'
    refused = 'voice_errors_total{type="invalid_metric"}'
    before = await scrape(agent.url)
    client = VoiceClient(agent.url)
    await client.create_session()
    await client.connect()
    await client.wait_media()

    async def refused_now(value: object) -> None:
        seen = len(client.events)
        await client.send({"type": "client_metrics", "voice_to_voice_ms": value})
        await client.wait_for(lambda e: e.get("code") == "invalid_metric", after=seen)

    try:
        await refused_now(420)  # nothing was said yet
        await client.send({"type": "text", "text": "what time is it"})
        await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "speaking", timeout=30)
        for bad in (-5, 0, 120_000, "soon"):
            await refused_now(bad)
        seen = len(client.events)
        await client.send({"type": "client_metrics", "voice_to_voice_ms": 420})
        await client.send({"type": "ping", "ts": "taken"})
        await client.wait_for(lambda e: e.get("ts") == "taken", after=seen)
        assert not [e for e in client.events[seen:] if e["type"] == "error"]
        await refused_now(420)  # one reply, one report
    finally:
        await client.close()
    after = await scrape(agent.url)
    assert after[count] - before.get(count, 0) == 1
    assert after[refused] - before.get(refused, 0) == 6
