"""The HTTP API of docs/api.md against a real agent: sessions, capacity, cleanup after vanished clients."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import httpx
import pytest

from tests.support import waits
from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from tests.support.ws import Signaling
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("sessions-api")]

# The five `webrtc_*` metrics that docs/api.md ("Metrics") holds to as a fixed contract.
WEBRTC_METRICS = (
    "webrtc_websocket_connections_total",
    "webrtc_active_sessions_total",
    "webrtc_peer_connections_total",
    "webrtc_signaling_messages_total",
    "webrtc_signaling_latency_seconds",
)


GRACE_S = 0.5  # voice_reconnect_grace_s: how long a call outlives its client's socket


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    env = {
        "voice_max_sessions": "2",
        "voice_reconnect_grace_s": f"{GRACE_S:g}",
        "voice_connect_timeout_s": "30",
    }
    with running_agent(tmp_path_factory.mktemp("agent"), **env) as proc:
        yield proc


@pytest.fixture
async def http(agent: AgentProcess) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=agent.url, timeout=10) as client:
        yield client
        for s in (await client.get("/v2/sessions")).json():
            await client.delete(f"/v2/sessions/{s['id']}")


# A cut socket reaches the agent at once; its call is released after the reconnect grace
# (docs/reliability.md), and a test sees that no later than the scheduling slack after it.
within_grace = functools.partial(waits.until, timeout=GRACE_S + waits.SCHEDULING_SLACK_S)


async def test_service_info_health_and_webrtc_metrics(http: httpx.AsyncClient) -> None:
    info = (await http.get("/", headers={"accept": "application/json"})).json()
    assert info["links"]["signaling"] == "/ws/v2/{session_id}"
    health = (await http.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["redis"] == {"enabled": False, "healthy": False}
    text = (await http.get("/metrics")).text
    for name in WEBRTC_METRICS:
        assert f"# TYPE {name} " in text, name
    assert "voice_session_capacity 2.0" in text
    assert (await http.get("/openapi.json")).json()["paths"]["/v2/sessions"]


async def test_session_crud(http: httpx.AsyncClient) -> None:
    created = await http.post("/v2/sessions")
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "created"
    assert body["ws_path"] == f"/ws/v2/{body['id']}"
    assert body["ws_url"].endswith(body["ws_path"])
    for field in ("created_at", "last_activity", "expires_at", "is_ai_speaking", "transcript", "ai_response"):
        assert field in body
    assert (await http.get(f"/v2/sessions/{body['id']}")).json()["id"] == body["id"]
    assert body["id"] in [s["id"] for s in (await http.get("/v2/sessions")).json()]
    assert (await http.delete(f"/v2/sessions/{body['id']}")).status_code == 204
    assert (await http.get(f"/v2/sessions/{body['id']}")).status_code == 404
    assert (await http.delete(f"/v2/sessions/{body['id']}")).status_code == 404
    missing = await http.get("/v2/sessions/nope")
    assert missing.status_code == 404
    assert missing.json()["detail"]


async def test_full_agent_answers_503_with_retry_after_and_recovers(http: httpx.AsyncClient) -> None:
    ids = [(await http.post("/v2/sessions")).json()["id"] for _ in range(2)]
    full = await http.post("/v2/sessions")
    assert full.status_code == 503
    assert int(full.headers["retry-after"]) >= 1
    assert full.json()["detail"]
    ready = await http.get("/ready")
    assert ready.status_code == 503
    assert "at capacity" in ready.json()["reasons"]
    await http.delete(f"/v2/sessions/{ids[0]}")
    assert (await http.post("/v2/sessions")).status_code == 201


async def test_vanished_client_is_cleaned_up_and_gauges_return_to_zero(
    agent: AgentProcess, http: httpx.AsyncClient
) -> None:
    client = VoiceClient(agent.url)
    await client.create_session()
    await client.connect()
    await client.wait_media()
    during = await scrape(agent.url)
    assert during["webrtc_active_sessions_total"] == 1
    assert during["webrtc_peer_connections_total"] == 1
    assert during["webrtc_websocket_connections_total"] == 1
    # The client vanishes: the TCP connection is cut without a close frame, media just stops.
    assert client.ws is not None
    client.ws.transport.abort()
    assert client.pc is not None
    await client.pc.close()

    async def drained() -> bool:
        m = await scrape(agent.url)
        return (
            m["webrtc_active_sessions_total"] == 0
            and m["webrtc_peer_connections_total"] == 0
            and m["webrtc_websocket_connections_total"] == 0
        )

    await within_grace(drained, what="the vanished client's call released")
    view = (await http.get(f"/v2/sessions/{client.session['id']}")).json()
    assert view["status"] == "disconnected", view
    await client.close()


async def test_suspended_session_resumes_on_reconnect(agent: AgentProcess, http: httpx.AsyncClient) -> None:
    sid = (await http.post("/v2/sessions")).json()["id"]
    first = await Signaling.open(agent.url, sid)
    await first.next_event(lambda e: e["type"] == "session")
    await first.send({"type": "text", "text": "hello"})
    await first.next_event(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
    first.ws.transport.abort()

    async def suspended() -> bool:
        return (await http.get(f"/v2/sessions/{sid}")).json()["status"] == "disconnected"

    await within_grace(suspended, what="the session suspended")
    again = await Signaling.open(agent.url, sid)
    session = (await again.next_event(lambda e: e["type"] == "session"))["session"]
    assert session["id"] == sid
    assert [m["role"] for m in session["history"]][:2] == ["user", "assistant"], "history must survive"
    assert session["peer_connections"] == {}, "a resumed call holds no media until the client offers"
    await again.send({"type": "text", "text": "please repeat what I said"})
    reply = await again.next_event(lambda e: e["type"] == "ai_response" and e["final"], timeout=20)
    assert "hello" in reply["text"].lower(), reply
    await again.close()
