"""Operator benchmarks: reconcile latency, cold start of many pools, external metrics latency.

Everything runs for real on loopback: kmock as the Kubernetes API server (in this process), the
operator as `python -m voice_operator`, a redis-server with agents registered by the agents' own
store code. kmock is a Python test server, so the API-server side is slower than a real one; the
figures are an upper bound for the operator's own work.

* reconcile latency: VoiceAgentPool POSTed -> its ServiceAccount, Service, PDB, Deployment and
  HPA all stored (target < 1 s on kmock), over sequential pools;
* cold start: N pools exist, no owned objects; a fresh operator starts -> all owned objects and
  status present. Reports the time and the operator's API calls per pool; then a restart over the
  reconciled pools (resume) with its calls and writes per pool (writes should be ~0);
* external metrics: GET .../voicepool_session_demand latency (the HPA's query) with 3 agents.

`python -m bench.operator [--pools N] [--cold N]`; results in bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import pathlib
import tempfile
import time
from typing import Any

import aiohttp
import kmock

from bench.common import summary, table, write
from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import OWNED, POOLS
from tests.operator.harness import (
    Agents,
    Kube,
    OperatorProcess,
    RedisServer,
    launch_operator,
    wait_for,
    write_kubeconfig,
)
from voice_operator import constants as c

METRIC_PATH = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/{c.DEMAND_METRIC}"
PLURALS = {r.split("/")[-1] for r in OWNED}
RECONCILE_TARGET_MS = 1000.0


def owned_present(cluster: Cluster, namespace: str, name: str) -> bool:
    return all(cluster.peek(res, namespace, name) is not None for res in OWNED)


def status_present(cluster: Cluster, namespace: str, name: str) -> bool:
    body = cluster.peek(POOLS, namespace, name) or {}
    return "conditions" in (body.get("status") or {})


def handled(cluster: Cluster, namespace: str, name: str) -> bool:
    body = cluster.peek(POOLS, namespace, name) or {}
    return "voicepool.dev/last-handled-configuration" in (body.get("metadata", {}).get("annotations") or {})


def pool(name: str, redis_url: str) -> dict[str, Any]:
    return samples.pool(name, "bench", redis={"url": redis_url}, bufferSessions=2)


async def started(cluster: Cluster, workdir: pathlib.Path, tag: str) -> OperatorProcess:
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", str(cluster.url).rstrip("/"))
    # The production status interval: per-pool timers must not dominate the measurement.
    op = launch_operator(kubeconfig, workdir / f"operator-{tag}.log", VOICE_OPERATOR_STATUS_INTERVAL="10")
    await op.wait_started(30)
    return op


async def reconcile_latency(cluster: Cluster, kube: Kube, redis_url: str, count: int) -> list[float]:
    """Sequential pools: POST -> every owned object stored (polled every 2 ms in-process)."""
    latencies = []
    for i in range(count):
        name = f"lat-{i}"
        t0 = time.perf_counter()
        await kube.create(POOLS, pool(name, redis_url))
        await wait_for(functools.partial(owned_present, cluster, "bench", name), 30, name, interval=0.002)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def operator_calls(cluster: Cluster, since: int) -> tuple[int, int]:
    """(requests, writes) the operator made to the API since request number `since` (watches excluded)."""
    requests = [r for r in cluster.log[since:] if r.action != kmock.action.WATCH]
    return len(requests), len(cluster.writes(since))


async def cold_start(
    cluster: Cluster, kube: Kube, workdir: pathlib.Path, redis_url: str, count: int
) -> dict[str, Any]:
    for i in range(count):
        await kube.create(POOLS, pool(f"cold-{i}", redis_url))
    names = [f"cold-{i}" for i in range(count)]
    mark = cluster.request_count
    t0 = time.perf_counter()
    op = await started(cluster, workdir, "cold")
    try:
        await wait_for(
            lambda: all(owned_present(cluster, "bench", n) for n in names), 300, "cold objects", 0.02
        )
        objects_s = time.perf_counter() - t0
        await wait_for(
            lambda: all(status_present(cluster, "bench", n) for n in names), 300, "cold status", 0.02
        )
        status_s = time.perf_counter() - t0
        calls, writes = operator_calls(cluster, mark)
        # Let kopf record every pool as handled, so the restart below is a pure resume.
        await wait_for(lambda: all(handled(cluster, "bench", n) for n in names), 300, "kopf's records", 0.02)
    finally:
        op.stop()

    mark = cluster.request_count
    before = {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for res in OWNED
        for o in cluster.live(res)
    }
    t0 = time.perf_counter()
    op = await started(cluster, workdir, "resume")
    try:
        await wait_for(lambda: _resumed(op, count), 300, "resume of every pool", 0.05)
        resume_s = time.perf_counter() - t0
        resume_calls, resume_writes = operator_calls(cluster, mark)
        owned_writes = [
            w for w in cluster.writes(mark) if w.resource is not None and w.resource.plural in PLURALS
        ]
        after = {
            (o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for res in OWNED
            for o in cluster.live(res)
        }
    finally:
        op.stop()
    return {
        "pools": count,
        "all_objects_s": round(objects_s, 2),
        "all_status_s": round(status_s, 2),
        "api_calls_per_pool": round(calls / count, 1),
        "writes_per_pool": round(writes / count, 1),
        "resume_s": round(resume_s, 2),
        "resume_api_calls_per_pool": round(resume_calls / count, 1),
        "resume_writes_per_pool": round(resume_writes / count, 2),
        "resume_owned_object_write_requests": len(owned_writes),
        "resume_objects_unchanged": before == after,
    }


async def _resumed(op: OperatorProcess, count: int) -> bool:
    done = await op.metric("voicepool_operator_reconciles_total", kind=c.POOL_KIND)
    return done is not None and done >= count


async def metrics_latency(op: OperatorProcess, requests: int) -> tuple[list[float], int]:
    url = f"{op.external_url}{METRIC_PATH}?labelSelector={c.POOL_LABEL}%3Dlat-0"
    latencies = []
    value = -1
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                body = await resp.json()
            latencies.append((time.perf_counter() - t0) * 1000)
            assert resp.status == 200, body
            value = int(body["items"][0]["value"])
    return latencies, value


async def run(pools: int, cold: int, metric_requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        workdir = pathlib.Path(tmp)
        redis = RedisServer(workdir)
        agents = Agents(redis.url)
        try:
            async with Cluster(strict=False) as cluster, kmock.Server(cluster, host="127.0.0.1"):
                cluster.install_crds()
                kube = Kube(cluster)
                op = await started(cluster, workdir, "latency")
                try:
                    latencies = await reconcile_latency(cluster, kube, redis.url, pools)
                    for agent, calls in (("lat-0-a", 4), ("lat-0-b", 3), ("lat-0-c", 1)):
                        await agents.start("bench.lat-0", agent)
                        await agents.call(agent, calls)
                    metric_ms, demand = await metrics_latency(op, metric_requests)
                finally:
                    op.stop()
            async with Cluster(strict=False) as cluster, kmock.Server(cluster, host="127.0.0.1"):
                cluster.install_crds()
                cold_result = await cold_start(cluster, Kube(cluster), workdir, redis.url, cold)
        finally:
            await agents.close()
            redis.stop()
    return {
        "reconcile_ms": summary(latencies),
        "reconcile_target_ms": RECONCILE_TARGET_MS,
        "external_metric_ms": summary(metric_ms),
        "external_metric_value": demand,
        "external_metric_expected": 10,  # ceil(4 + 3 + 1 + buffer 2)
        "cold_start": cold_result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=30, help="sequential pools for reconcile latency")
    parser.add_argument("--cold", type=int, default=200, help="pools reconciled from a cold start")
    parser.add_argument("--metric-requests", type=int, default=500)
    args = parser.parse_args()
    result = asyncio.run(run(args.pools, args.cold, args.metric_requests))
    rec, met, cold = result["reconcile_ms"], result["external_metric_ms"], result["cold_start"]
    rows = [
        (
            "reconcile: CR -> all owned objects, p50/p95/p99 ms",
            f"{rec['p50']} / {rec['p95']} / {rec['p99']} (n={rec['n']})",
            "< 1000",
        ),
        (
            "external metric GET, p50/p95/p99 ms",
            f"{met['p50']} / {met['p95']} / {met['p99']} (n={met['n']})",
            "-",
        ),
        ("external metric value (4+3+1 active, buffer 2)", str(result["external_metric_value"]), "10"),
        (
            f"cold start {cold['pools']} pools: all objects / all status s",
            f"{cold['all_objects_s']} / {cold['all_status_s']}",
            "-",
        ),
        (
            "cold start: API calls (writes) per pool",
            f"{cold['api_calls_per_pool']} ({cold['writes_per_pool']})",
            "-",
        ),
        (f"resume {cold['pools']} reconciled pools s", str(cold["resume_s"]), "-"),
        (
            "resume: API calls (writes) per pool",
            f"{cold['resume_api_calls_per_pool']} ({cold['resume_writes_per_pool']})",
            "0 owned-object writes",
        ),
        (
            "resume: write requests to owned objects / all unchanged",
            f"{cold['resume_owned_object_write_requests']} / {cold['resume_objects_unchanged']}",
            "0 / True",
        ),
    ]
    print(table(rows))
    print(f"written {write('operator', result)}")
    if rec["p95"] > RECONCILE_TARGET_MS or result["external_metric_value"] != 10:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
