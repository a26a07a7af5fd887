"""Waiting for and reading what the operator did in the kmock cluster (bounded polls)."""

from typing import Any

from tests.operator.cluster import Cluster
from tests.operator.harness import wait_for
from voice_operator.conditions import find

POOLS = "voicepool.dev/v1alpha1/voiceagentpools"
DEPLOYMENTS = "apps/v1/deployments"
OWNED = {
    "v1/serviceaccounts": "ServiceAccount",
    "v1/services": "Service",
    "policy/v1/poddisruptionbudgets": "PodDisruptionBudget",
    DEPLOYMENTS: "Deployment",
    "autoscaling/v2/horizontalpodautoscalers": "HorizontalPodAutoscaler",
}


def owned_objects(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any] | None]:
    return {kind: cluster.obj(res, namespace, name) for res, kind in OWNED.items()}


async def wait_owned(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    def present() -> dict[str, dict[str, Any]] | None:
        objs = owned_objects(cluster, namespace, name)
        return {k: v for k, v in objs.items() if v is not None} if all(objs.values()) else None

    result: dict[str, dict[str, Any]] = await wait_for(present, 15, f"objects of pool {namespace}/{name}")
    return result


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    found = find(((body or {}).get("status") or {}).get("conditions"), kind)
    return dict(found) if found else {}


async def wait_status(cluster: Cluster, name: str, what: str, check: Any, namespace: str = "default") -> Any:
    def ok() -> Any:
        body = cluster.obj(POOLS, namespace, name)
        return body if body is not None and check(body) else None

    return await wait_for(ok, 15, what)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return result


def events_of(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in cluster.live("v1/events")
        if e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == name
    ]
