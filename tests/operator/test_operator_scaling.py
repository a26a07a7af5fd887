"""Session-aware scaling with the real operator: external metrics from a real Redis, deletion costs."""

from typing import Any

from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import DEPLOYMENTS, POOLS, condition, wait_owned, wait_status
from tests.operator.harness import Agents, Kube, OperatorProcess, RedisServer, StartOperator, wait_for
from voice_operator import constants as c

METRICS_API = "/apis/external.metrics.k8s.io/v1beta1"
PODS = "v1/pods"


async def demand(op: OperatorProcess, pool: str, namespace: str = "default") -> tuple[int, Any]:
    url = f"{op.external_url}{METRICS_API}/namespaces/{namespace}/{c.DEMAND_METRIC}"
    return await op.get(f"{url}?labelSelector={c.POOL_LABEL}%3D{pool}")


async def demand_value(op: OperatorProcess, pool: str) -> int | None:
    status, body = await demand(op, pool)
    return int(body["items"][0]["value"]) if status == 200 else None


async def test_external_metric_is_ceil_of_active_sessions_plus_buffer(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer, agents: Agents
) -> None:
    op = start_operator()
    await op.wait_started()
    # Agents of 4 sessions, like the fake agents below.
    fixed = samples.pool("fixed", redis={"url": redis_server.url}, bufferSessions=3, sessionsPerAgent=4)
    await kube.create(POOLS, fixed)
    await kube.create(POOLS, samples.pool("pct", redis={"url": redis_server.url}, bufferSessions="25%"))
    await wait_owned(cluster, "default", "fixed")
    await wait_owned(cluster, "default", "pct")

    # Discovery lists the one metric the HPAs ask for.
    status, discovery = await op.get(op.external_url + METRICS_API)
    assert status == 200 and [r["name"] for r in discovery["resources"]] == [c.DEMAND_METRIC]

    # No agents yet: the demand is the buffer alone (warm capacity before the first call).
    assert await wait_for(lambda: demand_value(op, "fixed"), 10, "a demand value") == 3
    assert await demand_value(op, "pct") == 0

    # Agents register and take calls through the agents' own store (VOICE_POOL = "<namespace>.<pool>").
    await agents.start("default.fixed", "fixed-a")
    await agents.call("fixed-a", 4)  # full
    await agents.start("default.fixed", "fixed-b")
    await agents.call("fixed-b", 2)
    await agents.start("default.fixed", "fixed-b", draining=True)  # draining calls still count
    await agents.start("default.fixed", "fixed-c")
    await agents.call("fixed-c", 3)
    await agents.die("fixed-c")  # heartbeat gone: its numbers are stale
    await agents.start("default.pct", "pct-a", capacity=8)
    await agents.call("pct-a", 5)
    await agents.start("default.other", "other-a", capacity=10)
    await agents.call("other-a", 9)  # another pool's sessions are not ours

    status, body = await demand(op, "fixed")
    assert status == 200
    assert body["kind"] == "ExternalMetricValueList"
    (item,) = body["items"]
    assert item["metricName"] == c.DEMAND_METRIC and item["value"] == "9"  # ceil(4 + 2 + 3)
    assert item["metricLabels"] == {c.POOL_LABEL: "fixed"}
    assert await demand_value(op, "pct") == 7  # ceil(5 + 1.25)

    # The pool status follows the same numbers.
    body = await wait_status(
        cluster, "fixed", "sessions in status", lambda b: b["status"].get("activeSessions") == 6
    )
    assert body["status"]["demand"] == 9
    assert body["status"]["desiredReplicas"] == 3  # ceil(9 / 4 sessions per agent)

    # Unknown pools and metrics are 404 Status objects, a bad selector is 400.
    status, body = await demand(op, "nope")
    assert status == 404 and body["kind"] == "Status"
    status, _ = await op.get(f"{op.external_url}{METRICS_API}/namespaces/default/other_metric")
    assert status == 404
    status, _ = await op.get(
        f"{op.external_url}{METRICS_API}/namespaces/default/{c.DEMAND_METRIC}?labelSelector=a!%3Db"
    )
    assert status == 400

    # Redis goes away: a 503 the HPA tolerates (it keeps the replica count), the pool says why.
    redis_server.stop()
    status, body = await demand(op, "fixed")
    assert status == 503 and body["reason"] == "ServiceUnavailable"
    body = await wait_status(
        cluster,
        "fixed",
        "RedisUnavailable",
        lambda b: condition(b, "Degraded").get("reason") == "RedisUnavailable",
    )
    assert body["status"]["activeSessions"] == 6, "the last known load is kept"
    assert op.proc.poll() is None
    assert (
        await op.metric("voicepool_external_metrics_requests_total", result="redis_unavailable") or 0
    ) >= 1


async def test_metric_requests_only_read_even_when_redis_is_down(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    """The HPA polls the metric of every pool: those requests must never turn into API writes."""
    op = start_operator(VOICE_OPERATOR_STATUS_INTERVAL="3600")  # no status timer during the test
    await op.wait_started()
    await kube.create(POOLS, samples.pool("polled", redis={"url": redis_server.url}))
    await wait_owned(cluster, "default", "polled")
    await wait_status(
        cluster,
        "polled",
        "the creation handled (kopf's own record is written after the status)",
        lambda b: (
            condition(b, "Degraded").get("status") == "False"
            and "voicepool.dev/last-handled-configuration" in (b["metadata"].get("annotations") or {})
        ),
    )
    redis_server.stop()
    mark = cluster.request_count
    for _ in range(5):
        status, _ = await demand(op, "polled")
        assert status == 503
    # Something that does warrant a status write: the agents' Deployment reports a ready agent.
    await kube.patch(DEPLOYMENTS, "default", "polled", {"status": {"replicas": 1, "readyReplicas": 1}})
    await wait_status(
        cluster,
        "polled",
        "the ready agent and the Redis outage in one status",
        lambda b: (
            b["status"].get("readyReplicas") == 1
            and condition(b, "Degraded").get("reason") == "RedisUnavailable"
        ),
    )
    writes = [
        w for w in cluster.writes(mark) if w.resource is not None and w.resource.plural == "voiceagentpools"
    ]
    assert len(writes) == 1 and writes[0].subresource == "status", "only the Deployment's change was written"


def agent_pod(name: str, pool: str, cost: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "labels": {c.LABEL_NAME: "voice-agent", c.POOL_LABEL: pool},
    }
    if cost is not None:
        meta["annotations"] = {c.DELETION_COST_ANNOTATION: cost}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "agent", "image": "x"}]},
    }


def costs(cluster: Cluster, *names: str) -> dict[str, str | None]:
    result = {}
    for name in names:
        pod = cluster.obj(PODS, "default", name) or {}
        result[name] = (pod.get("metadata", {}).get("annotations") or {}).get(c.DELETION_COST_ANNOTATION)
    return result


async def test_pod_deletion_cost_follows_each_agents_session_count(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer, agents: Agents
) -> None:
    op = start_operator()
    await op.wait_started()
    await kube.create(POOLS, samples.pool("busy", redis={"url": redis_server.url}))
    await wait_owned(cluster, "default", "busy")
    # The ReplicaSet controller's pods (agent id = pod name), one of another pool, one stale cost.
    for pod in (
        agent_pod("busy-1", "busy"),
        agent_pod("busy-2", "busy"),
        agent_pod("busy-3", "busy", cost="7"),
    ):
        await kube.create(PODS, pod)
    await kube.create(PODS, agent_pod("elsewhere-1", "elsewhere"))
    await agents.start("default.busy", "busy-1")
    await agents.call("busy-1", 3)
    await agents.start("default.busy", "busy-2")

    want = {"busy-1": "3", "busy-2": "0", "busy-3": "0"}
    await wait_for(lambda: costs(cluster, *want) == want, 10, f"deletion costs {want}")
    assert costs(cluster, "elsewhere-1") == {"elsewhere-1": None}

    # Calls end on one agent and start on another: the costs follow, idle agents go first.
    await agents.hang_up("busy-1", 2)
    await agents.start("default.busy", "busy-1", draining=True)
    await agents.start("default.busy", "busy-2", draining=True)
    await agents.start("default.busy", "busy-3")
    await agents.call("busy-3", 4)  # the only agent taking calls
    want = {"busy-1": "1", "busy-2": "0", "busy-3": "4"}
    await wait_for(lambda: costs(cluster, *want) == want, 10, f"deletion costs {want}")
    version = cluster.obj(PODS, "default", "busy-2")["metadata"]["resourceVersion"]  # type: ignore[index]
    await op.wait_metric_growth("voicepool_operator_status_refreshes_total", 3)
    assert cluster.obj(PODS, "default", "busy-2")["metadata"]["resourceVersion"] == version, "no rewrite"  # type: ignore[index]
