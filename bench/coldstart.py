"""Cold start of a pool scaled to zero (spec.autoscaling.engine keda, replicas.min 0), on loopback:
from a session request that finds no agent up to a session on a fresh agent.

Real parts: kmock as the Kubernetes API, the operator process, a redis-server, and a real agent
process (offline providers) started the moment the operator's scaler says the pool is active, as
the kubelet would start the pod KEDA asked for. Not in the figure: KEDA's polling interval (the
scaler is polled here every 100 ms; the ScaledObject's pollingInterval, 5 s, is the worst case to
add), scheduling and the image pull (none on a node that has the image).

Phases per run: wake (the waker's 503) -> active (IsActive true) -> agent ready (process spawned ->
/ready 200 and live in the registry) -> session (the client's next POST /v2/sessions -> 201).

`python -m bench.coldstart [--runs N]`; results in bench/results/coldstart.json.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import tempfile
import time
from typing import Any

import grpc
import httpx
import kmock
import redis.asyncio as aioredis

from bench.common import summary, table, write
from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS
from tests.operator.harness import Kube, RedisServer, launch_operator, wait_for, write_kubeconfig
from tests.operator.test_operator_keda import Keda, install_keda
from tests.support.procs import AgentProcess
from voice_operator.externalscaler import externalscaler_pb2 as pb
from voice_operator.pools.load import read_pool_load
from voice_operator.pools.render import KEDA_POLLING_INTERVAL_S

POOL = "cold"


async def one_run(
    op_waker: str, keda: Keda, redis: RedisServer, workdir: pathlib.Path, i: int
) -> dict[str, float]:
    ref = pb.ScaledObjectRef(name=POOL, namespace="default")
    async with httpx.AsyncClient(timeout=10) as http:
        t0 = time.monotonic()
        woke = await http.post(f"{op_waker}/pools/default/{POOL}/v2/sessions", json={})
        assert woke.status_code == 503 and woke.json()["code"] == "agent_starting", woke.text
        t_wake = time.monotonic()

        async def active() -> bool:
            return bool((await keda.is_active(ref, timeout=5)).result)

        await wait_for(active, 10, "IsActive", interval=0.1)
        t_active = time.monotonic()
        agent = AgentProcess(
            {"REDIS_URL": redis.url, "VOICE_POOL": f"default.{POOL}", "VOICE_AGENT_ID": f"{POOL}-{i}"},
            workdir / f"agent-{i}.log",
        )
        try:
            await asyncio.to_thread(agent.wait_ready, 60.0)

            async def ready() -> bool:
                return (await http.get(agent.url + "/ready")).status_code == 200

            await wait_for(ready, 60, "/ready", interval=0.05)
            # Live as the operator and the agents' allocation script judge it (heartbeat and inbox).
            client = aioredis.Redis.from_url(redis.url, decode_responses=True)
            try:

                async def live() -> bool:
                    return bool((await read_pool_load(client, f"default.{POOL}")).live)

                await wait_for(live, 20, "the agent live in Redis", interval=0.05)
            finally:
                await client.aclose()
            t_ready = time.monotonic()
            created = await http.post(agent.url + "/v2/sessions", json={})
            assert created.status_code == 201, created.text
            t_session = time.monotonic()
        finally:
            await asyncio.to_thread(agent.stop)
    return {
        "wake_ms": (t_wake - t0) * 1000,
        "activate_ms": (t_active - t_wake) * 1000,
        "agent_ready_ms": (t_ready - t_active) * 1000,
        "session_ms": (t_session - t_ready) * 1000,
        "total_ms": (t_session - t0) * 1000,
    }


async def main(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        redis = RedisServer(workdir)
        async with Cluster(strict=False) as cluster, kmock.Server(cluster, host="127.0.0.1"):
            cluster.install_crds()
            install_keda(cluster)
            kubeconfig = write_kubeconfig(workdir / "kubeconfig", str(cluster.url).rstrip("/"))
            op = launch_operator(kubeconfig, workdir / "operator.log")
            channel = grpc.aio.insecure_channel(op.scaler_address)
            try:
                await op.wait_started()
                pool = samples.pool(
                    POOL,
                    autoscaling={"engine": "keda"},
                    replicas={"min": 0, "max": 2},
                    redis={"url": redis.url},
                )
                await Kube(cluster).create(POOLS, pool)
                keda = Keda(channel)
                ref = pb.ScaledObjectRef(name=POOL, namespace="default")

                async def known() -> bool:
                    try:
                        return (await keda.is_active(ref, timeout=5)).result is False
                    except grpc.aio.AioRpcError:
                        return False

                await wait_for(known, 20, "the pool known to the scaler")
                results = []
                for i in range(runs):
                    results.append(await one_run(op.waker_url, keda, redis, workdir, i))
                    # The agent is gone and the wake lapses (30 s): back to zero for the next run.
                    await wait_for(lambda: _idle(keda, ref), 60, "the pool idle again", interval=0.5)
            finally:
                await channel.close()
                op.stop()
        redis.stop()
    phases = {k: summary([r[k] for r in results]) for k in results[0]}
    return {"runs": results, "phases": phases, "keda_polling_interval_s": KEDA_POLLING_INTERVAL_S}


async def _idle(keda: Keda, ref: pb.ScaledObjectRef) -> bool:
    return not (await keda.is_active(ref, timeout=5)).result


def report(data: dict[str, Any]) -> str:
    p = data["phases"]
    rows = [
        ("Wake: session request -> the waker's 503, p50", f"{p['wake_ms']['p50']} ms", "—"),
        ("Wake -> IsActive true (scaler polled every 100 ms), p50", f"{p['activate_ms']['p50']} ms", "—"),
        (
            "Agent process started -> /ready and live in Redis, p50 / max",
            f"{p['agent_ready_ms']['p50']} / {max(r['agent_ready_ms'] for r in data['runs']):.0f} ms",
            "—",
        ),
        ("Ready -> session created (the client's retry), p50", f"{p['session_ms']['p50']} ms", "—"),
        ("Total on loopback, p50", f"{p['total_ms']['p50']} ms", "—"),
        ("Plus KEDA's polling interval, at most", f"{data['keda_polling_interval_s']} s", "—"),
    ]
    return table(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(main(args.runs))
    print(f"wrote {write('coldstart', result)}")
    print(report(result))
