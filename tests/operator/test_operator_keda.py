"""The keda engine with the real operator: KEDA's external scaler over gRPC (a grpcio client in
KEDA's place) fed by a real Redis, the waker of pools at zero, and switching engines."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import kmock
import pytest
import pytest_asyncio

from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS, wait_owned
from tests.operator.harness import Agents, Kube, OperatorProcess, RedisServer, StartOperator, wait_for
from voice_operator import constants as c
from voice_operator.externalscaler import externalscaler_pb2 as pb

SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
SERVICE = "/externalscaler.ExternalScaler"


def install_keda(cluster: Cluster) -> None:
    """What installing KEDA adds to the API the operator sees: the ScaledObject kind."""
    cluster.resources[SCALED_OBJECTS] = kmock.ResourceInfo(
        kind="ScaledObject",
        singular="scaledobject",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
    )


class Keda:
    """KEDA's side of externalscaler.proto: the calls its `external` trigger makes."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        ref, metrics = pb.ScaledObjectRef.SerializeToString, pb.GetMetricsRequest.SerializeToString
        self.is_active = channel.unary_unary(f"{SERVICE}/IsActive", ref, pb.IsActiveResponse.FromString)
        self.stream_is_active = channel.unary_stream(
            f"{SERVICE}/StreamIsActive", ref, pb.IsActiveResponse.FromString
        )
        self.get_metric_spec = channel.unary_unary(
            f"{SERVICE}/GetMetricSpec", ref, pb.GetMetricSpecResponse.FromString
        )
        self.get_metrics = channel.unary_unary(
            f"{SERVICE}/GetMetrics", metrics, pb.GetMetricsResponse.FromString
        )

    async def active(self, pool: str) -> bool:
        reply = await self.is_active(pb.ScaledObjectRef(name=pool, namespace="default"), timeout=5)
        return bool(reply.result)

    async def demand(self, pool: str) -> int:
        ref = pb.ScaledObjectRef(name=pool, namespace="default")
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=c.DEMAND_METRIC)
        (value,) = (await self.get_metrics(request, timeout=5)).metricValues
        assert value.metricName == c.DEMAND_METRIC and value.metricValueFloat == value.metricValue
        return int(value.metricValue)


@pytest_asyncio.fixture()
async def keda_channel() -> AsyncIterator[list[grpc.aio.Channel]]:
    channels: list[grpc.aio.Channel] = []
    yield channels
    for channel in channels:
        await channel.close()


async def connect(op: OperatorProcess, channels: list[grpc.aio.Channel]) -> Keda:
    channel = grpc.aio.insecure_channel(op.scaler_address)
    channels.append(channel)
    return Keda(channel)


async def wake(
    op: OperatorProcess, pool: str, namespace: str = "default", header: str | None = None
) -> tuple[int, Any, Any]:
    """A client's session request reaching the waker: the pool in the path, or (a fallback route
    that keeps the client's path) in the header."""
    path = "/v2/sessions" if header is not None else f"/pools/{namespace}/{pool}/v2/sessions"
    headers = {"X-Voicepool-Pool": header} if header is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{op.waker_url}{path}", json={}, headers=headers) as resp,
    ):
        return resp.status, resp.headers, await resp.json()


def keda_pool(name: str, redis_url: str, **spec: Any) -> dict[str, Any]:
    return samples.pool(
        name,
        autoscaling={"engine": "keda"},
        replicas={"min": 0, "max": 4},
        sessionsPerAgent=2,
        redis={"url": redis_url},
        **spec,
    )


async def test_external_scaler_serves_redis_demand_and_a_wake_activates_a_pool_at_zero(
    cluster: Cluster,
    kube: Kube,
    start_operator: StartOperator,
    redis_server: RedisServer,
    agents: Agents,
    keda_channel: list[grpc.aio.Channel],
) -> None:
    install_keda(cluster)
    op = start_operator()
    await op.wait_started()
    await kube.create(POOLS, keda_pool("idle", redis_server.url))
    scaled = await wait_for(lambda: cluster.obj(SCALED_OBJECTS, "default", "idle"), 15, "the ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"] == {"scalerAddress": c.SCALER_ADDRESS}
    assert cluster.obj(HPAS, "default", "idle") is None
    assert cluster.obj("apps/v1/deployments", "default", "idle")["spec"]["replicas"] == 0  # type: ignore[index]
    keda = await connect(op, keda_channel)

    # The HPA KEDA makes gets sessionsPerAgent as its per-agent target.
    ref = pb.ScaledObjectRef(name="idle", namespace="default", scalerMetadata={"scalerAddress": "x"})
    (spec,) = (await keda.get_metric_spec(ref, timeout=5)).metricSpecs
    assert (spec.metricName, spec.targetSize, spec.targetSizeFloat) == (c.DEMAND_METRIC, 2, 2.0)

    # Idle: no session, no buffer, inactive (KEDA keeps it at zero).
    assert await wait_for(lambda: keda.is_active(ref, timeout=5), 10, "the pool known to the scaler")
    assert not await keda.active("idle")
    assert await keda.demand("idle") == 0
    stream = keda.stream_is_active(ref)
    assert (await stream.read()).result is False

    # A session request while no agent is up: 503 + Retry-After, and the pool turns active.
    status, headers, body = await wake(op, "idle")
    assert status == 503 and headers["Retry-After"] == "2"
    assert body == {"detail": "starting an agent", "code": "agent_starting"}
    assert headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert await keda.active("idle")
    assert await keda.demand("idle") == 1
    assert (await stream.read()).result is True, "StreamIsActive pushes the change"
    stream.cancel()

    # The agent is up and takes calls: the demand is the sessions (the wake counts as one of them).
    await agents.start("default.idle", "idle-a", capacity=1)
    await agents.call("idle-a", 1)
    assert await keda.demand("idle") == 1
    await agents.start("default.idle", "idle-b", capacity=2)
    await agents.call("idle-b", 2)
    assert await keda.demand("idle") == 3

    # The same wake through a fallback route that keeps the client's path and names the pool.
    status, _, body = await wake(op, "", header="default/idle")
    assert (status, body["code"]) == (503, "agent_starting")
    status, _, body = await wake(op, "", header="idle")
    assert (status, body["code"]) == (400, "pool_unknown")

    # Unknown pools: NOT_FOUND to KEDA, 404 to clients (nothing is woken).
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await keda.active("nope")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    status, _, body = await wake(op, "nope")
    assert (status, body["code"]) == (404, "pool_unknown")

    # Redis down: UNAVAILABLE (KEDA keeps the replica count), 503 to clients.
    redis_server.stop()
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await keda.active("idle")
    assert down.value.code() is grpc.StatusCode.UNAVAILABLE
    status, headers, body = await wake(op, "idle")
    assert (status, body["code"], headers["Retry-After"]) == (503, "pool_unavailable", "2")
    assert op.proc.poll() is None


async def test_switching_engines_leaves_one_autoscaler(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    install_keda(cluster)
    op = start_operator()
    await op.wait_started()
    await kube.create(POOLS, samples.pool("switch", redis={"url": redis_server.url}))
    await wait_owned(cluster, "default", "switch")
    assert cluster.obj(SCALED_OBJECTS, "default", "switch") is None

    await kube.patch(POOLS, "default", "switch", {"spec": {"autoscaling": {"engine": "keda"}}})
    await wait_for(
        lambda: (
            cluster.obj(HPAS, "default", "switch") is None
            and cluster.obj(SCALED_OBJECTS, "default", "switch") is not None
        ),
        15,
        "the HPA replaced by a ScaledObject",
    )
    # Back to the HPA: the ScaledObject goes (KEDA then removes the HPA it had made of it).
    await kube.patch(POOLS, "default", "switch", {"spec": {"autoscaling": {"engine": "hpa"}}})
    await wait_for(
        lambda: (
            cluster.obj(SCALED_OBJECTS, "default", "switch") is None
            and cluster.obj(HPAS, "default", "switch") is not None
        ),
        15,
        "the ScaledObject replaced by an HPA",
    )
    assert op.proc.poll() is None


async def test_an_autoscaler_the_pool_does_not_own_is_left_alone(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    install_keda(cluster)
    op = start_operator()
    await op.wait_started()
    await kube.create(POOLS, keda_pool("mine", redis_server.url))
    await wait_for(lambda: cluster.obj(SCALED_OBJECTS, "default", "mine"), 15, "the ScaledObject")
    hand_made = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "mine", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mine"},
            "maxReplicas": 2,
        },
    }
    await kube.create(HPAS, hand_made)
    await kube.patch(POOLS, "default", "mine", {"spec": {"sessionsPerAgent": 3}})

    def max_sessions() -> str | None:
        deployment = cluster.obj("apps/v1/deployments", "default", "mine") or {}
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return next((e.get("value") for e in env if e["name"] == "VOICE_MAX_SESSIONS"), None)

    await wait_for(lambda: max_sessions() == "3", 15, "the spec change reconciled")
    assert cluster.obj(HPAS, "default", "mine") is not None
    assert op.proc.poll() is None
