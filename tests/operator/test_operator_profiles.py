"""NodeTuningProfile with the real operator: the isolated tuner DaemonSet, node labels, node counts."""

import json
from typing import Any

from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import condition
from tests.operator.harness import Kube, StartOperator, wait_for
from voice_operator import constants as c

PROFILES = "voicepool.dev/v1alpha1/nodetuningprofiles"
NODES = "v1/nodes"
TUNING_NS = "voicepool-tuning"
LABEL = "tuning.voicepool.dev/realtime"


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def tuner_pod(node_name: str, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"nodetuning-realtime-{node_name}",
            "namespace": TUNING_NS,
            "labels": {c.PROFILE_LABEL: "realtime", c.LABEL_NAME: "node-tuner"},
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "tuner", "image": "busybox"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def labelled(cluster: Cluster) -> set[str]:
    return {
        n["metadata"]["name"]
        for n in cluster.live(NODES)
        if (n["metadata"].get("labels") or {}).get(LABEL) == "true"
    }


def counts(cluster: Cluster) -> tuple[int, int] | None:
    status = (cluster.obj(PROFILES, None, "realtime") or {}).get("status") or {}
    if "desiredNodes" not in status:
        return None
    return status["desiredNodes"], status["tunedNodes"]


async def test_profile_tunes_matching_nodes_and_labels_the_verified_ones(
    cluster: Cluster, kube: Kube, start_operator: StartOperator
) -> None:
    for name, role in (("n1", "voice"), ("n2", "voice"), ("n3", "web")):
        await kube.create(NODES, node(name, **{"voicepool.dev/role": role}))
    op = start_operator()
    await op.wait_started()
    profile = await kube.create(PROFILES, samples.profile("realtime"))

    # The tuner: its own namespace (privileged allowed only there), ServiceAccount and DaemonSet.
    ds = await wait_for(
        lambda: cluster.obj("apps/v1/daemonsets", TUNING_NS, "nodetuning-realtime"), 10, "tuner"
    )
    namespace = cluster.obj("v1/namespaces", None, TUNING_NS)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    sa = cluster.obj("v1/serviceaccounts", TUNING_NS, "nodetuning-realtime")
    assert sa is not None
    for obj in (ds, sa):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("NodeTuningProfile", profile["metadata"]["uid"])
    pod = ds["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nodetuning-realtime"
    assert pod["nodeSelector"] == {"voicepool.dev/role": "voice"}
    assert "net.ipv4.tcp_congestion_control=bbr" in pod["containers"][0]["env"][0]["value"]

    # Two nodes match, none verified yet.
    await wait_for(lambda: counts(cluster) == (2, 0), 10, "desiredNodes=2 tunedNodes=0")
    assert labelled(cluster) == set()

    # The tuner on n1 verified its sysctls (Ready); the one on n2 has not.
    await kube.create("v1/pods", tuner_pod("n1", ready=True))
    await kube.create("v1/pods", tuner_pod("n2", ready=False))
    await wait_for(lambda: counts(cluster) == (2, 1), 10, "tunedNodes=1")
    assert labelled(cluster) == {"n1"}
    assert condition(cluster.obj(PROFILES, None, "realtime"), "Ready")["reason"] == "Tuning"

    await kube.patch(
        "v1/pods",
        TUNING_NS,
        "nodetuning-realtime-n2",
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    )
    await wait_for(lambda: labelled(cluster) == {"n1", "n2"}, 10, "both voice nodes labelled")
    body = await wait_for(
        lambda: counts(cluster) == (2, 2) and cluster.obj(PROFILES, None, "realtime"), 10, "2/2"
    )
    assert condition(body, "Ready")["status"] == "True"

    # n1 loses its role: no longer desired, its label goes.
    await kube.patch(NODES, None, "n1", {"metadata": {"labels": {"voicepool.dev/role": "web"}}})
    await wait_for(lambda: labelled(cluster) == {"n2"} and counts(cluster) == (1, 1), 10, "n1 unlabelled")

    # Deleting the profile releases the nodes; the tuner goes with it (garbage collection).
    await kube.delete(PROFILES, None, "realtime")
    await wait_for(lambda: cluster.obj(PROFILES, None, "realtime") is None, 10, "profile gone")
    assert labelled(cluster) == set()
    await wait_for(
        lambda: cluster.obj("apps/v1/daemonsets", TUNING_NS, "nodetuning-realtime") is None, 10, "GC"
    )
    assert op.proc.poll() is None


async def test_health_and_prometheus_endpoints(
    cluster: Cluster, kube: Kube, start_operator: StartOperator
) -> None:
    op = start_operator(VOICE_OPERATOR_LOG_FORMAT="json")
    await op.wait_started()
    await kube.create("voicepool.dev/v1alpha1/voiceagentpools", samples.pool("seen"))
    await wait_for(lambda: cluster.obj("apps/v1/deployments", "default", "seen"), 10, "the pool reconciled")

    # kopf's liveness endpoint with our probe (the number of tracked pools; kopf caches probe results).
    status, body = await op.get(op.health_url)
    assert status == 200 and isinstance(body["pools"], int)
    status, text = await op.get(op.metrics_url)
    assert status == 200
    for name in (
        "voicepool_operator_reconciles_total",
        "voicepool_operator_reconcile_seconds_bucket",
        "voicepool_operator_api_requests_total",
        "voicepool_operator_object_writes_total",
        "voicepool_external_metrics_requests_total",
    ):
        assert name in text
    assert (
        await op.metric("voicepool_operator_object_writes_total", kind="Deployment", action="create")
    ) == 1
    # Structured logs: one JSON object a line, object references included.
    records = [json.loads(line) for line in op.log_text().splitlines() if line.strip()]
    assert records and all(list(r)[:4] == ["ts", "level", "logger", "msg"] for r in records)
    assert any((r.get("k8s") or {}).get("name") == "seen" for r in records)
