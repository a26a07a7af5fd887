"""Abuse controls of the HTTP API against a real agent process: creation rate per client address,
bearer-token auth, body size, request deadlines (slow loris), CORS allowlist, and nothing secret or
internal in any response."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support import waits
from tests.support.procs import AgentProcess, running_agent

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability-limits")]

TOKEN = "vp-" + secrets.token_urlsafe(24)
ORIGIN = "https://app.example"
DEADLINE_S = 2.0  # voice_request_timeout_s below
# A known gap: the agent answers a body that never arrives with 408 on time but without
# `connection: close`, so uvicorn keeps the connection until its keep-alive timeout (5 s later).
# Strict: once the agent closes it at the deadline, this mark fails and must go.


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    env = {
        "voice_sessions_per_ip_per_min": "60",
        "voice_sessions_per_ip_burst": "3",
        "voice_max_body_bytes": "1024",
        "voice_request_timeout_s": f"{DEADLINE_S:g}",
        "voice_cors_origins": f"{ORIGIN},http://localhost:5173",
        "voice_api_token": TOKEN,
        "deepgram_api_key": "dg-never-shown-91f3",
    }
    with running_agent(tmp_path_factory.mktemp("agent"), **env) as proc:
        yield proc


@pytest.fixture
async def http(agent: AgentProcess) -> AsyncIterator[httpx.AsyncClient]:
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=agent.url, timeout=10, headers=auth) as client:
        yield client


ADDRESSES = itertools.count(1)


def client_ip() -> dict[str, str]:
    """A new client address each call (never reused: its creation budget would be spent), passed as
    a trusted loopback proxy would (uvicorn takes the nearest untrusted X-Forwarded-For hop)."""
    n = next(ADDRESSES)
    return {"x-forwarded-for": f"192.0.2.9, 198.51.{n // 250}.{n % 250 + 1}"}


async def test_creation_rate_is_per_address_with_retry_after(http: httpx.AsyncClient) -> None:
    mine, other = client_ip(), {"x-forwarded-for": "203.0.113.77"}
    made = [await http.post("/v2/sessions", headers=mine) for _ in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    refused = await http.post("/v2/sessions", headers=mine)
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 2, "60/min refills one creation per second"
    assert refused.json() == {"detail": "too many sessions created; slow down"}
    assert (await http.post("/v2/sessions", headers=other)).status_code == 201, "other clients unaffected"
    # After Retry-After the same address may create again (bounded poll on the agent's clock).
    deadline = time.monotonic() + wait + 3
    while (again := await http.post("/v2/sessions", headers=mine)).status_code == 429:
        assert time.monotonic() < deadline, "Retry-After was not honest"
        await asyncio.sleep(0.2)
    assert again.status_code == 201
    for r in [*made, again]:
        await http.delete(f"/v2/sessions/{r.json()['id']}")


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"bearer {TOKEN[:-1]}", "Bearer"],
    ids=["none", "wrong", "basic-scheme", "longer", "shorter", "empty"],
)
async def test_session_creation_and_listing_need_the_token(agent: AgentProcess, header: str | None) -> None:
    headers = {**client_ip(), **({"authorization": header} if header else {})}
    async with httpx.AsyncClient(base_url=agent.url, timeout=10, headers=headers) as anon:
        for resp in (await anon.post("/v2/sessions"), await anon.get("/v2/sessions")):
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"] == "Bearer"
            assert resp.json() == {"detail": "missing or invalid bearer token"}
            assert TOKEN not in resp.text


async def test_right_token_creates_and_session_routes_use_the_id_as_capability(
    agent: AgentProcess, http: httpx.AsyncClient
) -> None:
    created = await http.post("/v2/sessions", headers={**client_ip(), "authorization": f"bearer {TOKEN}"})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert sid in [s["id"] for s in (await http.get("/v2/sessions")).json()]
    async with httpx.AsyncClient(base_url=agent.url, timeout=10) as anon:
        assert (await anon.get(f"/v2/sessions/{sid}")).json()["id"] == sid
        assert (await anon.get("/health")).status_code == 200
        assert (await anon.delete(f"/v2/sessions/{sid}")).status_code == 204


async def test_request_bodies_over_the_limit_get_413(http: httpx.AsyncClient) -> None:
    ip = client_ip()
    declared = await http.post("/v2/sessions", headers=ip, content=b"x" * 2048)
    assert declared.status_code == 413
    assert declared.json()["detail"] == "request body larger than 1024 bytes"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 100

    streamed = await http.post("/v2/sessions", headers=ip, content=chunks())
    assert streamed.status_code == 413, "a chunked body without Content-Length is counted too"
    small = await http.post("/v2/sessions", headers=ip, content=b"{}")
    assert small.status_code == 201
    await http.delete(f"/v2/sessions/{small.json()['id']}")


async def test_cors_allows_only_the_configured_origins(http: httpx.AsyncClient) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    ok = await http.options("/v2/sessions", headers={"origin": ORIGIN, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    evil = await http.options("/v2/sessions", headers={"origin": "https://evil.example", **preflight})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    simple = await http.get("/health", headers={"origin": "https://evil.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
    allowed = await http.get("/health", headers={"origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN


async def test_no_secrets_or_internals_in_any_response(agent: AgentProcess, http: httpx.AsyncClient) -> None:
    created = (await http.post("/v2/sessions", headers=client_ip())).json()
    bodies = [created]
    for path in ("/", "/health", "/ready", "/metrics", "/openapi.json", "/v2/sessions", "/nope"):
        bodies.append((await http.get(path, headers={"accept": "application/json"})).text)
    bodies.append((await http.get(f"/v2/sessions/{'x' * 5000}")).text)
    bodies.append((await http.post("/v2/sessions/abc", headers=client_ip())).text)
    text = "\n".join(map(str, bodies))
    for secret in (TOKEN, "dg-never-shown-91f3"):
        assert secret not in text
    for internal in ("Traceback", 'File "/', "site-packages", "voice_agent/"):
        assert internal not in text
    assert TOKEN not in agent.logs() and "dg-never-shown-91f3" not in agent.logs()
    await http.delete(f"/v2/sessions/{created['id']}")


SLOW_REQUESTS = {
    "headers": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    "websocket-handshake": b"GET /ws/v2/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
    "body": b"POST /v2/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
    + TOKEN.encode()
    + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    "silence": b"",  # connects and says nothing
}


@pytest.mark.parametrize("start", [pytest.param(start, id=kind) for kind, start in SLOW_REQUESTS.items()])
async def test_requests_that_never_finish_get_408_and_their_connections_are_closed(
    agent: AgentProcess, http: httpx.AsyncClient, start: bytes
) -> None:
    """Slow loris: headers that never end, a WebSocket handshake that never ends, a body that never
    arrives, a client that says nothing. Each is answered 408 and closed by the agent within its 2 s
    deadline, while the clients stay connected; the agent's fds come back without their help."""
    base_fds = agent.open_fds()
    conns: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
    answers: asyncio.Future[list[tuple[float, bytes]]] | None = None
    try:
        for _ in range(5):
            connecting = time.monotonic()  # the agent's clock for this one starts later, never earlier
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
            conns.append((connecting, reader, writer))
            writer.write(start)
            await writer.drain()

        async def answered(connecting: float, reader: asyncio.StreamReader) -> tuple[float, bytes]:
            answer = await asyncio.wait_for(reader.read(), timeout=15)  # to EOF: the agent closed it
            return time.monotonic() - connecting, answer

        answers = asyncio.gather(*(answered(connecting, reader) for connecting, reader, _ in conns))
        # 1.5 s: inside the deadline; the agent accepts asynchronously.
        held = base_fds + len(conns)
        await waits.until(lambda: agent.open_fds() >= held, timeout=1.5, what="every slow connection held")
        assert (await http.get("/health")).status_code == 200, "everyone else is served meanwhile"
        latest = DEADLINE_S + waits.SCHEDULING_SLACK_S
        for took, answer in await answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            # Not before the deadline (the clients never gave up), and after it only by scheduling slack.
            assert DEADLINE_S - 0.1 <= took <= latest, f"closed after {took:.2f} s"
        # Each fd went with the FIN its client just read: nothing is left to wait for but scheduling.
        await waits.until(
            lambda: agent.open_fds() <= base_fds + 2,
            timeout=waits.SCHEDULING_SLACK_S,
            what="the agent releasing the slow connections itself",
        )
    finally:
        if answers is not None:
            answers.cancel()
        for _, _, writer in conns:
            writer.close()
