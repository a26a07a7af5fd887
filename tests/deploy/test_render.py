"""Every kustomization renders, every object is valid for Kubernetes, the CRDs come from crds/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    CRD_DIR,
    KUSTOMIZATIONS,
    OVERLAYS,
    Obj,
    named,
    of_kind,
    operator_rendered,
    render,
    render_with_components,
)
from tests.deploy.schemas import problems

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "APIService",
    "ClusterKopfPeering",
    "NodeTuningProfile",
}


def object_id(o: Obj) -> tuple[str, str, str, str]:
    meta = o["metadata"]
    return (o["apiVersion"], o["kind"], meta.get("namespace", ""), meta["name"])


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomization_renders_unique_objects(kustomization: str) -> None:
    objs = render(kustomization)
    assert objs
    ids = [object_id(o) for o in objs]
    assert len(ids) == len(set(ids)), "duplicate objects"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_is_valid_for_recent_kubernetes(kustomization: str) -> None:
    invalid = {object_id(o): p for o in render(kustomization) if (p := problems(o))}
    assert not invalid


def test_objects_the_operator_renders_for_the_examples_are_valid() -> None:
    rendered = operator_rendered(render("examples"))
    assert {o["kind"] for o in rendered} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "DaemonSet"}
    invalid = {object_id(o): p for o in rendered if (p := problems(o))}
    assert not invalid


def test_namespaced_objects_name_their_namespace(overlay: list[Obj]) -> None:
    """No object silently lands in whatever namespace kubectl happens to default to."""
    missing = [
        object_id(o)
        for o in overlay
        if o["kind"] not in CLUSTER_SCOPED and not o["metadata"].get("namespace")
    ]
    assert not missing


def test_overlay_installs_the_crds_exactly_as_in_crds_dir(overlay: list[Obj]) -> None:
    source = {
        doc["metadata"]["name"]: doc
        for path in CRD_DIR.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "CustomResourceDefinition"
    }
    installed = {o["metadata"]["name"]: o for o in of_kind(overlay, "CustomResourceDefinition")}
    assert installed.keys() == source.keys()
    for name, crd in installed.items():
        assert crd["spec"] == source[name]["spec"], name


def test_overlays_differ_where_they_should() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")
    replicas = {
        name: {o["metadata"]["name"]: o["spec"]["replicas"] for o in of_kind(objs, "Deployment")}
        for name, objs in (("dev", dev), ("prod", prod))
    }
    assert replicas["dev"] == {"voicepool-operator": 1, "turn": 1}
    assert replicas["prod"] == {"voicepool-operator": 2, "turn": 2}
    # Secrets with throwaway values only in dev; prod expects them to be created by the operator team.
    assert {o["metadata"]["name"] for o in of_kind(dev, "Secret")} == {"voicepool-redis", "voicepool-turn"}
    assert not of_kind(prod, "Secret")
    assert {o["metadata"]["name"] for o in of_kind(prod, "PodDisruptionBudget")} == {
        "voicepool-operator",
        "turn",
    }
    for deployment in of_kind(prod, "Deployment"):
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    turn = next(o for o in prod if o["kind"] == "Service" and o["metadata"]["name"] == "turn")
    assert turn["spec"]["type"] == "LoadBalancer"
    assert [o["metadata"]["name"] for o in of_kind(dev, "VoiceAgentPool")] == ["offline"]


def test_external_metrics_apiservice_is_an_optional_component(tmp_path: Path) -> None:
    """Only one provider may hold external.metrics.k8s.io per cluster: the base does not take it."""
    external = "v1beta1.external.metrics.k8s.io"
    assert external not in {o["metadata"]["name"] for o in of_kind(render("base"), "APIService")}
    objs = render_with_components("base", ["components/external-metrics"], tmp_path)
    apiservice = named(objs, "APIService", external)
    binding = named(objs, "ClusterRoleBinding", "voicepool-hpa-external-metrics")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    ]
    assert (
        problems(apiservice) == []
        and problems(named(objs, "ClusterRole", "voicepool-external-metrics-reader")) == []
    )
    # The overlays serve the default engine (hpa), so they include it.
    for overlay in OVERLAYS:
        assert external in {o["metadata"]["name"] for o in of_kind(render(overlay), "APIService")}


def test_redis_tls_component_switches_redis_to_tls_only(tmp_path: Path) -> None:
    objs = render_with_components("overlays/prod", ["components/redis-tls"], tmp_path)
    changed = [named(objs, "StatefulSet", "redis"), named(objs, "Certificate", "redis-tls")]
    assert [problems(o) for o in changed] == [[], []]
    redis = named(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
    command = redis["containers"][0]["command"][-1]
    assert "--port 0 --tls-port 6379" in command
    assert {v["name"] for v in redis["volumes"]} == {"config", "auth", "tmp", "tls"}
    assert named(objs, "Certificate", "redis-tls")["spec"]["secretName"] == "voicepool-redis-tls"
