"""Security policy over everything that runs: the overlays, the examples and what the operator renders.

Rules (docs/deploy.md): non-root, read-only root fs, all capabilities dropped,
no privilege escalation, resources set, images pinned by tag; only the node tuner is privileged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.deploy.manifests import TUNING_NAMESPACE, Obj, containers, named, of_kind, workloads

SECRET_ENV = re.compile(r"(KEY|PASSWORD|TOKEN|SECRET|CREDENTIAL)", re.IGNORECASE)


def is_tuner(obj: Obj) -> bool:
    labels = obj["metadata"].get("labels", {})
    return bool(
        obj["kind"] == "DaemonSet"
        and obj["metadata"].get("namespace") == TUNING_NAMESPACE
        and labels.get("app.kubernetes.io/name") == "node-tuner"
    )


def effective(pod: Obj, container: Obj, key: str) -> Any:
    """A securityContext field as the kubelet resolves it: the container's, else the pod's."""
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


def ident(obj: Obj, container: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}:{container['name']}"


def test_only_the_tuner_is_privileged_or_on_the_host(cluster_objects: list[Obj]) -> None:
    host_access = []
    for obj, pod in workloads(cluster_objects):
        if is_tuner(obj):
            continue
        if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
            host_access.append(obj["metadata"]["name"])
        host_access += [
            ident(obj, c) for c in containers(pod) if c.get("securityContext", {}).get("privileged")
        ]
        host_access += [v["name"] for v in pod.get("volumes", []) if "hostPath" in v]
    assert not host_access
    tuners = [obj for obj, _ in workloads(cluster_objects) if is_tuner(obj)]
    assert tuners, "the example NodeTuningProfile renders a tuner DaemonSet"


def test_containers_run_non_root_hardened(cluster_objects: list[Obj]) -> None:
    bad = []
    for obj, pod in workloads(cluster_objects):
        if is_tuner(obj):
            continue
        for c in containers(pod):
            checks = {
                "runAsNonRoot": effective(pod, c, "runAsNonRoot") is True,
                "uid": (effective(pod, c, "runAsUser") or 0) > 0,
                "readOnlyRootFilesystem": c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation": c.get("securityContext", {}).get("allowPrivilegeEscalation")
                is False,
                "capabilities": c.get("securityContext", {}).get("capabilities", {}).get("drop") == ["ALL"],
                "seccomp": (effective(pod, c, "seccompProfile") or {}).get("type") == "RuntimeDefault",
            }
            bad += [f"{ident(obj, c)} {name}" for name, ok in checks.items() if not ok]
    assert not bad


def test_tuner_is_read_only_and_isolated(cluster_objects: list[Obj]) -> None:
    for obj, pod in workloads(cluster_objects):
        if is_tuner(obj):
            assert pod["automountServiceAccountToken"] is False
            assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in containers(pod))


def test_resources_set_everywhere(cluster_objects: list[Obj]) -> None:
    missing = [
        f"{ident(obj, c)} {part}.{res}"
        for obj, pod in workloads(cluster_objects)
        for c in containers(pod)
        for part in ("requests", "limits")
        for res in ("cpu", "memory")
        if res not in c.get("resources", {}).get(part, {})
    ]
    assert not missing


def test_agents_get_guaranteed_qos(cluster_objects: list[Obj]) -> None:
    agents = [
        o
        for o in of_kind(cluster_objects, "Deployment")
        if o["metadata"]["labels"].get("app.kubernetes.io/name") == "voice-agent"
    ]
    assert agents
    for obj in agents:
        for c in containers(obj["spec"]["template"]["spec"]):
            assert c["resources"]["requests"] == c["resources"]["limits"], ident(obj, c)


def test_images_are_pinned_by_tag(cluster_objects: list[Obj]) -> None:
    def pinned(image: str) -> bool:
        if "@sha256:" in image:
            return True
        name, _, tag = image.rpartition(":")
        return bool(name) and "/" not in tag and tag not in {"", "latest"}

    unpinned = [
        f"{ident(obj, c)} {c['image']}"
        for obj, pod in workloads(cluster_objects)
        for c in containers(pod)
        if not pinned(c["image"])
    ]
    assert not unpinned


def test_secrets_only_by_reference(cluster_objects: list[Obj]) -> None:
    """No credential is written into a pod spec: env that looks secret must come from a Secret."""
    literal = [
        f"{ident(obj, c)} {e['name']}"
        for obj, pod in workloads(cluster_objects)
        for c in containers(pod)
        for e in c.get("env", [])
        # A value that is a file path (the operator's TLS key location) is not a secret itself.
        if SECRET_ENV.search(e["name"]) and "value" in e and not str(e["value"]).startswith("/")
    ]
    assert not literal


def test_only_the_operator_mounts_an_api_token(cluster_objects: list[Obj]) -> None:
    mounting = {
        obj["metadata"]["name"]
        for obj, pod in workloads(cluster_objects)
        if pod.get("automountServiceAccountToken") is not False
    }
    assert mounting == {"voicepool-operator"}


def test_pod_security_admission_levels(cluster_objects: list[Obj]) -> None:
    levels = {
        ns["metadata"]["name"]: ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for ns in of_kind(cluster_objects, "Namespace")
    }
    assert levels == {"voicepool": "restricted", TUNING_NAMESPACE: "privileged"}


def test_operator_rbac_is_least_privilege(overlay: list[Obj]) -> None:
    rules = named(overlay, "ClusterRole", "voicepool-operator")["rules"]
    flat = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert not any("*" in item for item in flat)
    # Secrets: read by name only, never listed or watched, never written.
    assert {(r, v) for g, r, v in flat if r == "secrets"} == {("secrets", "get")}
    # No writes to RBAC, namespaces, CRDs or pods beyond the deletion-cost annotation.
    writes = {"create", "update", "patch", "delete"}
    for g, r, v in flat:
        if g in {"rbac.authorization.k8s.io", "apiextensions.k8s.io"} or r in {"namespaces"}:
            assert v not in writes, (g, r, v)
        if r == "pods":
            assert v in {"get", "list", "watch", "patch"}
    needed = {
        ("voicepool.dev", "voiceagentpools/status", "patch"),
        ("voicepool.dev", "nodetuningprofiles/status", "patch"),
        ("apps", "deployments", "create"),
        ("apps", "daemonsets", "create"),
        ("", "services", "create"),
        ("", "serviceaccounts", "create"),
        ("policy", "poddisruptionbudgets", "create"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("", "nodes", "patch"),
        ("", "pods", "patch"),
        ("", "events", "create"),
        ("kopf.dev", "clusterkopfpeerings", "patch"),
    }
    assert needed <= flat


# The checks above that hold for any set of objects a platform team applies: an optional component's
# tests run them over an overlay with the component (tests/deploy/test_redis_ha.py).
WORKLOAD_CHECKS: list[Callable[[list[Obj]], None]] = [
    test_only_the_tuner_is_privileged_or_on_the_host,
    test_containers_run_non_root_hardened,
    test_resources_set_everywhere,
    test_images_are_pinned_by_tag,
    test_secrets_only_by_reference,
    test_only_the_operator_mounts_an_api_token,
    test_pod_security_admission_levels,
]
