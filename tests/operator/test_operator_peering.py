"""HA: two operator replicas peer through the ClusterKopfPeering; only the higher priority acts."""

from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS, wait_owned
from tests.operator.harness import Agents, Kube, OperatorProcess, RedisServer, StartOperator, wait_for
from tests.operator.test_operator_scaling import demand

PEERING = {
    "apiVersion": "kopf.dev/v1",
    "kind": "ClusterKopfPeering",
    "metadata": {"name": "voicepool-operator"},
}


async def deployment_creates(op: OperatorProcess) -> float:
    return (
        await op.metric("voicepool_operator_object_writes_total", kind="Deployment", action="create") or 0.0
    )


async def test_only_the_leading_replica_reconciles_but_both_serve_the_metric(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer, agents: Agents
) -> None:
    await kube.create("kopf.dev/v1/clusterkopfpeerings", PEERING)
    leader = start_operator(VOICE_OPERATOR_PRIORITY="100")
    standby = start_operator(VOICE_OPERATOR_PRIORITY="10")
    await leader.wait_started()
    await standby.wait_started()

    def both_registered() -> bool:
        peering = cluster.obj("kopf.dev/v1/clusterkopfpeerings", None, "voicepool-operator") or {}
        return len(peering.get("status") or {}) >= 2

    await wait_for(both_registered, 15, "both replicas in the peering")
    for i in range(3):
        await kube.create(POOLS, samples.pool(f"ha-{i}", redis={"url": redis_server.url}, bufferSessions=1))
    for i in range(3):
        await wait_owned(cluster, "default", f"ha-{i}")
    await wait_for(lambda: _count(leader, 3), 10, "the leader's writes")
    assert await deployment_creates(standby) == 0, "the standby replica stays paused"
    assert not await standby.metric("voicepool_operator_reconciles_total"), "it handles nothing at all"
    assert "Pausing operations" in standby.log_text()
    assert len(cluster.live("apps/v1/deployments")) == 3

    # The APIService balances the HPA's queries over both replicas: the standby answers too.
    await agents.start("default.ha-0", "ha-0-a")
    await agents.call("ha-0-a", 2)
    for op in (leader, standby):
        status, body = await demand(op, "ha-0")
        assert status == 200 and body["items"][0]["value"] == "3", (status, body)
    status, _ = await demand(standby, "nope")
    assert status == 404
    assert not await standby.metric("voicepool_operator_object_writes_total"), "the standby never writes"


async def _count(op: OperatorProcess, want: int) -> bool:
    return await deployment_creates(op) == want
