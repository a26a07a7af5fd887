"""The Redis primary killed under load, several times: how soon the pool allocates again, and whether
any acknowledged session record is lost (docs/redis.md, "High availability").

A primary, a replica and three Sentinels (tests/redis/sentinels.py, down-after 1 s) on loopback and
two real agents given the Sentinel URL. Each round a client creates sessions through both agents
every SESSION_EVERY_S; the primary is killed with SIGKILL; measured from the kill:
- promotion: until a majority of the Sentinels names the replica;
- allocation: until a session created after the kill is acknowledged (201);
- operator metric: until the operator's load reader (voice_operator.pools.load) sees both agents live;
- lost: sessions acknowledged (201) before the kill whose record the new primary does not have.
The killed server then rejoins as a replica of the new primary (what the cluster's start script does)
and the group settles before the next round.

Also the cost of having a replica acknowledge each session write (WAIT): a fenced save of a record
with history, through the agents' store, with and without WAIT, on the same group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import pct, table, write
from bench.redis import ms_summary, record
from tests.redis.sentinels import SentinelGroup, sentinel_group
from tests.redis.servers import start_agents, stop_all
from tests.support.procs import AgentProcess
from voice_agent.store import keys
from voice_agent.store.redis import RedisSessionStore
from voice_operator.pools.load import RedisUnavailable, read_pool_load
from voice_operator.redis_clients import RedisClients

SESSION_EVERY_S = 0.1
GIVE_UP_S = 30.0
POOL = "default"


def log(msg: str) -> None:
    print(f"[bench.redis_failover] {msg}", flush=True)


class Creator:
    """Creates sessions through the agents in turn, recording when each was sent and its answer."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self.agents = agents
        self.sent: list[tuple[float, float, int, str]] = []  # sent, answered (monotonic), status, session id
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            i = 0
            while True:
                agent = self.agents[i % len(self.agents)]
                i += 1
                sent = time.monotonic()
                try:
                    resp = await http.post(agent.url + "/v2/sessions")
                    status, sid = (
                        resp.status_code,
                        resp.json().get("id", "") if resp.status_code == 201 else "",
                    )
                except httpx.HTTPError:
                    status, sid = 0, ""
                self.sent.append((sent, time.monotonic(), status, sid))
                await asyncio.sleep(max(0.0, SESSION_EVERY_S - (time.monotonic() - sent)))

    def start(self) -> None:
        self.sent.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def acknowledged_before(self, t: float) -> list[str]:
        return [sid for _, answered, status, sid in self.sent if status == 201 and answered < t]

    def first_allocation_after(self, t: float) -> float | None:
        return next((answered for sent, answered, status, _ in self.sent if status == 201 and sent > t), None)


async def until(check: Any, timeout: float, interval: float = 0.02) -> float | None:
    """Monotonic time at which the (async) check first held, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(interval)
    return None


async def one_round(group: SentinelGroup, creator: Creator, operator: RedisClients, n: int) -> dict[str, Any]:
    creator.start()
    await asyncio.sleep(2.0)  # a steady stream of acknowledged creations before the kill
    old_port = group.primary.port
    killed = time.monotonic()
    group.kill_primary()

    async def promoted() -> bool:
        return await asyncio.to_thread(group.primary_port) not in (None, old_port)

    async def allocated() -> bool:
        return creator.first_allocation_after(killed) is not None

    async def metric() -> bool:
        try:
            load = await read_pool_load(operator.get(group.url), POOL, timeout_s=1.0)
        except RedisUnavailable:
            return False
        return len(load.live) == 2

    promotion_at, metric_at = await asyncio.gather(until(promoted, GIVE_UP_S), until(metric, GIVE_UP_S))
    await until(allocated, GIVE_UP_S)
    await creator.stop()
    allocation_at = creator.first_allocation_after(killed)
    acknowledged = creator.acknowledged_before(killed)
    client = group.client()
    try:
        with client.pipeline(transaction=False) as pipe:
            for sid in acknowledged:
                pipe.exists(keys.session_key(POOL, sid))
            present = pipe.execute()
    finally:
        client.close()
    lost = [sid for sid, ok in zip(acknowledged, present, strict=True) if not ok]
    refused = sum(1 for sent, _, status, _ in creator.sent if sent > killed and status != 201)
    result = {
        "round": n,
        "promotion_ms": None if promotion_at is None else round((promotion_at - killed) * 1000, 1),
        "allocation_ms": None if allocation_at is None else round((allocation_at - killed) * 1000, 1),
        "metric_ms": None if metric_at is None else round((metric_at - killed) * 1000, 1),
        "acknowledged_before_kill": len(acknowledged),
        "lost": len(lost),
        "refused_after_kill": refused,
    }
    log(f"round {n}: {result}")
    await asyncio.to_thread(group.rejoin, 30.0)
    return result


async def wait_cost(group: SentinelGroup, n: int) -> dict[str, Any]:
    """A fenced save with and without WAIT 1, interleaved so both see the same machine."""
    out: dict[str, list[float]] = {"without": [], "with": []}
    stores = {
        "without": RedisSessionStore(group.url, "bench-wait", "w0", 10, wait_replicas=0),
        "with": RedisSessionStore(group.url, "bench-wait", "w1", 10, wait_replicas=1),
    }
    try:
        records = {}
        for name, store in stores.items():
            sub = store.pubsub()
            await sub.subscribe(store.inbox)
            await store.heartbeat(f"http://{name}", 60_000, [])
            rec = record()
            rec.owner = store.agent_id
            # Each store allocates its own session (the least-loaded live agent may be the other one:
            # retry until it lands here).
            while await store.allocate(rec) != store.agent_id:
                rec = record()
            records[name] = rec
        for _ in range(n):
            for name, store in stores.items():
                started = time.perf_counter()
                await store.save(records[name])
                out[name].append(time.perf_counter() - started)
    finally:
        for store in stores.values():
            await store.close()
    result = {name: ms_summary(values) for name, values in out.items()}
    result["added_p50_ms"] = round(result["with"]["p50"] - result["without"]["p50"], 3)
    result["added_p95_ms"] = round(result["with"]["p95"] - result["without"]["p95"], 3)
    return result


def stats(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "n": len(values),
        "missing": len(values) - len(got),
        "p50": round(pct(got, 50), 1),
        "p95": round(pct(got, 95), 1),
        "max": max(got, default=float("nan")),
    }


async def run(kills: int, saves: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp_dir:
        tmp = Path(tmp_dir)
        with sentinel_group(tmp / "redis") as group:
            log(f"sentinel group up: {group.url}")
            cost = await wait_cost(group, saves)
            log(f"WAIT cost: {cost}")
            agents = start_agents(
                tmp,
                group,  # type: ignore[arg-type]
                2,
                prefix="fo",
                voice_max_sessions="5000",
                voice_sessions_per_ip_per_min="0",
                voice_connect_timeout_s="20",
            )
            creator, operator = Creator(agents), RedisClients(timeout_s=1.0)
            try:
                rounds = [await one_round(group, creator, operator, n) for n in range(1, kills + 1)]
            finally:
                await creator.stop()
                await operator.close()
                stop_all(agents)
    return {
        "kills": kills,
        "down_after_ms": 1000,
        "session_every_s": SESSION_EVERY_S,
        "rounds": rounds,
        "promotion_ms": stats([r["promotion_ms"] for r in rounds]),
        "allocation_ms": stats([r["allocation_ms"] for r in rounds]),
        "metric_ms": stats([r["metric_ms"] for r in rounds]),
        "acknowledged_before_kill": sum(r["acknowledged_before_kill"] for r in rounds),
        "acknowledged_lost": sum(r["lost"] for r in rounds),
        "wait_cost": cost,
    }


def report(d: dict[str, Any]) -> str:
    def s(x: dict[str, Any]) -> str:
        missing = f", {x['missing']} never" if x["missing"] else ""
        return f"{x['p50'] / 1000:.2f} / {x['p95'] / 1000:.2f} s (max {x['max'] / 1000:.2f}){missing}"

    w = d["wait_cost"]
    rows = [
        (
            f"kill -9 of the primary to the replica promoted, p50 / p95 ({d['kills']} kills)",
            s(d["promotion_ms"]),
            "-",
        ),
        ("kill to new sessions allocated again, p50 / p95", s(d["allocation_ms"]), "≤ 10 s"),
        ("kill to the operator's load metric back, p50 / p95", s(d["metric_ms"]), "-"),
        (
            "acknowledged session records lost",
            f"{d['acknowledged_lost']} of {d['acknowledged_before_kill']}",
            "0",
        ),
        (
            "session save without / with WAIT 1, p50",
            f"{w['without']['p50']:.3f} / {w['with']['p50']:.3f} ms",
            "-",
        ),
        (
            "session save without / with WAIT 1, p95",
            f"{w['without']['p95']:.3f} / {w['with']['p95']:.3f} ms",
            "-",
        ),
    ]
    return table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 kills, 200 saves")
    args = parser.parse_args()
    kills, saves = (2, 200) if args.quick else (args.kills, args.saves)
    result = asyncio.run(run(kills, saves))
    path = write("redis-failover", result)
    print(report(result))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
