"""Redis benchmarks: session ops, allocation, relay, resume after kill -9.

Part 1 drives RedisSessionStore in-process against a real redis-server on loopback (the same
scripts the agents run). Part 2 runs real agent processes: ping round trips over the signaling
relay versus direct, and resume latency after the owner is killed with SIGKILL, measured at the
client from opening the WebSocket on another agent to receiving the resumed session.
`python -m bench.redis [--quick]`; results in bench/results/redis.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.common import pct, table, write
from tests.redis.servers import RedisServer, agent_id_of, redis_server, start_agents, stop_all
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.store import keys
from voice_agent.store import redis_scripts as lua
from voice_agent.store.redis import RedisSessionStore

POOL = "bench"


def log(msg: str) -> None:
    print(f"[bench.redis] {msg}", flush=True)


def ms_summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "mean": round(statistics.fmean(ms), 3),
        "p50": round(pct(ms, 50), 3),
        "p95": round(pct(ms, 95), 3),
        "p99": round(pct(ms, 99), 3),
    }


async def timed(n: int, op: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t0)
    return out


def record(history: int = 12) -> SessionRecord:
    rec = SessionRecord.new(secrets.token_urlsafe(16), 3600, "", "")
    for i in range(history):
        content = f"message {i}: " + "words " * 12
        rec.history.append(Message(role="user" if i % 2 == 0 else "assistant", content=content))
    return rec


async def agent_store(
    url: str, agent_id: str, capacity: int, pool: str = POOL
) -> tuple[RedisSessionStore, Any]:
    store = RedisSessionStore(url, pool, agent_id, capacity)
    sub = store.pubsub()
    await sub.subscribe(store.inbox)
    await store.heartbeat(f"http://{agent_id}", 60_000, [])
    return store, sub


def script_usec(server: RedisServer) -> dict[str, float]:
    """Time Redis itself spent per script call since the last CONFIG RESETSTAT (no client, no
    network, no scheduling of the client process: what one Redis can sustain)."""
    client = server.client()
    row: Any = client.info("commandstats").get("cmdstat_evalsha", {})
    lat: Any = client.info("latencystats").get("latency_percentiles_usec_evalsha", {})
    if isinstance(lat, str):
        lat = dict(kv.split("=") for kv in lat.split(","))
    return {
        "mean": round(float(row.get("usec_per_call", 0.0)), 2),
        "p50": float(lat.get("p50", 0.0)),
        "p99": float(lat.get("p99", 0.0)),
        "p99.9": float(lat.get("p99.9", 0.0)),
    }


def redis_benchmark_allocate(server: RedisServer, n: int, clients: int) -> dict[str, Any]:
    """The allocation script driven by redis-benchmark (a C client): what one Redis sustains."""
    sha = server.client().script_load(lua.ALLOCATE)
    now = int(time.time() * 1000)
    data = record(history=0).model_dump_json()
    sid = "bench-__rand_int__"
    script_keys = [keys.agents_key(POOL), keys.session_key(POOL, sid), keys.sessions_index_key(POOL)]
    script_args = [
        keys.agent_prefix(POOL),
        sid,
        data,
        str(now + 3_600_000),
        str(now),
        keys.session_events(POOL),
    ]
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-n", str(n), "-c", str(clients)]
    args += ["-r", "1000000000", "--csv", "EVALSHA", sha, "3", *script_keys, *script_args]
    server.client().config_resetstat()
    csv = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout
    header, row = (line.replace('"', "").rsplit(",", 7)[1:] for line in csv.strip().splitlines()[-2:])
    values = dict(zip(header, row, strict=True))  # the test name holds unescaped quotes: split from the right
    return {
        "clients": clients,
        "sessions_per_s": round(float(values["rps"])),
        "p50_ms": float(values["p50_latency_ms"]),
        "p99_ms": float(values["p99_latency_ms"]),
        "script_usec": script_usec(server),
    }


async def bench_store(server: RedisServer, quick: bool) -> dict[str, Any]:
    n = 500 if quick else 3000
    log("store: 10 agents, allocation ...")
    stores = [await agent_store(server.url, f"a{i}", 10**7) for i in range(10)]
    me = stores[0][0]
    out: dict[str, Any] = {"agents_registered": len(stores)}

    # Allocation, one at a time (latency) and from many concurrent callers (throughput).
    server.client().config_resetstat()
    recs = [record() for _ in range(n)]
    out["allocate_ms"] = ms_summary(await timed(n, lambda i: me.allocate(recs[i])))
    out["allocate_script_usec"] = script_usec(server)

    total, concurrency = (3000, 16) if quick else (20000, 32)
    pending = [record(history=0) for _ in range(total)]
    lat: list[float] = []

    async def worker(store: RedisSessionStore) -> None:
        while pending:  # bounded by `total`
            rec = pending.pop()
            t0 = time.perf_counter()
            await store.allocate(rec)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(stores[i % len(stores)][0]) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    out["allocate_concurrent"] = {
        "concurrency": concurrency,
        "sessions_per_s": round(total / elapsed),
        "latency_ms": ms_summary(lat),
    }

    out["allocate_redis_benchmark"] = redis_benchmark_allocate(server, 20000 if quick else 100000, 16)
    out["allocate_redis_benchmark_4"] = redis_benchmark_allocate(server, 10000 if quick else 50000, 4)
    log("store: save/get, takeover, pub/sub ...")
    # Session record ops on an owned session (12-message history, ~1.5 KB JSON).
    rec = record()
    owner_id = await me.allocate(rec)
    owner = next(s for s, _ in stores if s.agent_id == owner_id)
    await owner.claim(rec.id)
    server.client().config_resetstat()
    out["save_ms"] = ms_summary(await timed(n, lambda i: owner.save(rec)))
    out["save_script_usec"] = script_usec(server)
    out["get_ms"] = ms_summary(await timed(n, lambda i: owner.get(rec.id)))
    out["record_bytes"] = len(rec.model_dump_json())

    # Takeover: sessions of an agent whose process died (no inbox listener) claimed by another.
    dead, dead_sub = await agent_store(server.url, "dead", 10**7, pool=f"{POOL}-takeover")
    owned = [record() for _ in range(n // 5)]
    for r in owned:
        await dead.allocate(r)
    await dead_sub.aclose()
    claimer, claimer_sub = await agent_store(server.url, "claimer", 10**7, pool=f"{POOL}-takeover")
    out["takeover_claim_ms"] = ms_summary(await timed(len(owned), lambda i: claimer.claim(owned[i].id)))
    stores += [(dead, dead_sub), (claimer, claimer_sub)]

    # Pub/sub one-way latency between two connections (what the relay adds per message).
    sub = stores[3][1]
    publisher = stores[4][0]
    one_way: list[float] = []
    for i in range(n):
        await publisher.publish(stores[3][0].inbox, {"i": i, "t": time.perf_counter()})
        for _ in range(50):  # bounded: a lost message fails below instead of hanging
            msg = await sub.get_message(timeout=0.1)
            if msg is not None and msg.get("type") == "message":
                one_way.append(time.perf_counter() - json.loads(msg["data"])["t"])
                break
        else:
            raise RuntimeError("pub/sub message lost")
    out["pubsub_one_way_ms"] = ms_summary(one_way)

    for store, ps in stores:
        with contextlib.suppress(Exception):
            await ps.aclose()
        await store.close()
    return out


async def recv_type(ws: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """Next event of `kind` (bounded: a lost event fails the bench instead of hanging it)."""
    async with asyncio.timeout(timeout):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event.get("type") == kind:
                return event
            if event.get("type") == "error":
                raise RuntimeError(f"agent error: {event}")


async def ws_ping_rtts(url: str, session_id: str, n: int) -> list[float]:
    ws_url = url.replace("http://", "ws://") + f"/ws/v2/{session_id}"
    out = []
    async with websockets.connect(ws_url) as ws:
        await recv_type(ws, "session")
        for i in range(n):
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "ts": i}))
            await recv_type(ws, "pong")
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.025)  # paced like signaling, under the 50 msg/s per-socket limit
    return out


async def resume_once(url: str, session_id: str) -> float:
    ws_url = url.replace("http://", "ws://") + f"/ws/v2/{session_id}"
    t0 = time.perf_counter()
    async with websockets.connect(ws_url) as ws:
        event = await recv_type(ws, "session")
        elapsed = time.perf_counter() - t0
        if not event["session"]["history"]:
            raise RuntimeError("resumed without history")
        return elapsed


async def bench_agents(tmp: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with redis_server(tmp / "redis-agents") as server:
        agents = start_agents(
            tmp,
            server,
            2,
            prefix="bench",
            voice_max_sessions="200",
            voice_connect_timeout_s="600",
            voice_sessions_per_ip_per_min="0",
        )
        try:
            a, b = agents
            b_id = agent_id_of(b)
            async with httpx.AsyncClient(timeout=10) as http:
                sessions: list[str] = []
                for _ in range(200):  # least-loaded: every second create lands on b
                    if len(sessions) >= (10 if quick else 40):
                        break
                    s = (await http.post(a.url + "/v2/sessions")).json()
                    if s["owner"] == b_id:
                        sessions.append(s["id"])
            log(f"agents: {len(sessions)} sessions on the victim; pings ...")
            pings = 60 if quick else 200
            out["ws_ping_direct_ms"] = ms_summary(await ws_ping_rtts(b.url, sessions[0], pings))
            out["ws_ping_relayed_ms"] = ms_summary(await ws_ping_rtts(a.url, sessions[1], pings))
            # Give every session a turn of history so resume has something to carry.
            for sid in sessions:
                ws_url = b.url.replace("http://", "ws://") + f"/ws/v2/{sid}"
                async with websockets.connect(ws_url) as ws:
                    await ws.send(json.dumps({"type": "text", "text": "hello there"}))
                    await recv_type(ws, "ai_response", timeout=30)
            await asyncio.sleep(0.5)  # let the savers flush (bench only; tests poll)
            log("agents: kill -9 and resume ...")
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(10)
            out["resume_after_kill9_ms"] = ms_summary([await resume_once(a.url, sid) for sid in sessions])
            out["resume_note"] = "client: WebSocket open on a survivor -> resumed `session` event"
        finally:
            stop_all(agents)
    return out


def us(d: dict[str, float]) -> str:
    return f"avg {d['mean']} / p50 {d['p50']} / p99 {d['p99']} us"


def fmt(d: dict[str, float]) -> str:
    return f"avg {d['mean']:.3f} / p50 {d['p50']:.3f} / p99 {d['p99']:.3f} ms"


def report(res: dict[str, Any]) -> str:
    s, a = res["store"], res["agents"]
    conc, rb, rb4 = s["allocate_concurrent"], s["allocate_redis_benchmark"], s["allocate_redis_benchmark_4"]
    rows = [
        ("session save (fenced Lua)", fmt(s["save_ms"]), "avg < 1 ms, p99 < 2 ms"),
        ("session get", fmt(s["get_ms"]), "-"),
        ("allocation, one caller", fmt(s["allocate_ms"]), "p99 < 2 ms"),
        (
            f"allocation, {conc['concurrency']} asyncio callers",
            f"{conc['sessions_per_s']}/s, p99 {conc['latency_ms']['p99']:.3f} ms",
            ">= 5000/s",
        ),
        (
            "allocation, redis-benchmark 16 clients",
            f"{rb['sessions_per_s']}/s, p50 {rb['p50_ms']} / p99 {rb['p99_ms']} ms",
            ">= 5000/s, p99 < 2 ms",
        ),
        (
            "allocation, redis-benchmark 4 clients",
            f"{rb4['sessions_per_s']}/s, p50 {rb4['p50_ms']} / p99 {rb4['p99_ms']} ms",
            ">= 5000/s, p99 < 2 ms",
        ),
        ("allocation script, time in Redis", us(rb["script_usec"]), "-"),
        ("save script, time in Redis", us(s["save_script_usec"]), "-"),
        ("pub/sub one-way", fmt(s["pubsub_one_way_ms"]), "p99 < 5 ms"),
        ("takeover claim (Lua)", fmt(s["takeover_claim_ms"]), "-"),
        ("WS ping direct (RTT)", fmt(a["ws_ping_direct_ms"]), "-"),
        ("WS ping relayed via other agent (RTT)", fmt(a["ws_ping_relayed_ms"]), "-"),
        ("resume after kill -9 (client)", fmt(a["resume_after_kill9_ms"]), "p99 < 100 ms"),
    ]
    return table(rows)


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as d:
        tmp = Path(d)
        with redis_server(tmp / "redis") as server:
            store = await bench_store(server, quick)
        agents = await bench_agents(tmp, quick)
    res = {"store": store, "agents": agents, "quick": quick, "load_avg_1m_at_end": os.getloadavg()[0]}
    path = write("redis", res)
    print(report(res))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    asyncio.run(main(parser.parse_args().quick))
