"""docs/deploy.md's commands, exactly as written, with the real kubectl against an API server (kmock).

The commands are read from the doc, not copied here: the kubectl shell blocks and inline `kubectl
...` commands of "Step by step", one shell per step, in the doc's order. The cluster side plays
what its controllers would do (the workloads come up), and the doc's placeholders get values.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.deploy.kubeapi import api_server, kubectl_run, run, shell_env
from tests.deploy.manifests import Obj, kustomize
from tests.operator.cluster import Cluster, crds
from tests.operator.harness import Kube

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
SECTION = "## Step by step"
# What a reader puts in for the doc's placeholders.
PLACEHOLDERS = {"label node NODE ": "label node voice-1 "}
NODES = ["voice-1"]
WORKLOADS = ("apps/v1/deployments", "apps/v1/statefulsets")
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"


def doc_steps() -> dict[str, list[str]]:
    """Step ("1".."N", "Development") -> its shell scripts: kubectl blocks and inline kubectl commands."""
    text = DOC.read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^(?:(\d+)\. |(Development):)", section, flags=re.MULTILINE)
    steps: dict[str, list[str]] = {}
    for number, development, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        scripts = []
        for block, inline in re.findall(r"```bash\n(.*?)```|`(kubectl [^`]+)`", body, flags=re.DOTALL):
            script = block or inline
            if "kubectl" in script:
                for placeholder, value in PLACEHOLDERS.items():
                    script = script.replace(placeholder, value)
                scripts.append(textwrap.dedent(script))
        steps[number or development] = scripts
    return steps


def development_after() -> str:
    """The step the doc says the development overlay follows ("after step N")."""
    found = re.search(r"^Development:.*?after step (\d+)", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert found, "docs/deploy.md no longer says after which step the development overlay goes"
    return found.group(1)


def node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def rolled_out(obj: dict[str, object]) -> dict[str, object]:
    """The status a Deployment or StatefulSet reads once its controller brought every pod up."""
    spec = obj.get("spec")
    replicas = spec.get("replicas", 1) if isinstance(spec, dict) else 1
    meta = obj.get("metadata")
    generation = meta.get("generation", 1) if isinstance(meta, dict) else 1
    status: dict[str, object] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "updatedReplicas": replicas,
    }
    if obj.get("kind") == "StatefulSet":
        status.update(currentReplicas=replicas, currentRevision="r1", updateRevision="r1")
    return status


@contextlib.asynccontextmanager
async def controllers(cluster: Cluster) -> AsyncIterator[None]:
    """What the cluster's controllers do for the doc's `rollout status`: workloads come up."""
    kube = Kube(cluster)

    async def loop() -> None:
        while True:
            for resource in WORKLOADS:
                for obj in cluster.live(resource):
                    want = rolled_out(obj)
                    if {k: (obj.get("status") or {}).get(k) for k in want} != want:
                        meta = obj["metadata"]
                        await kube.patch(resource, meta["namespace"], meta["name"], {"status": want})
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_steps(cluster: Cluster, kubeconfig: Path, home: Path, steps: list[str]) -> None:
    doc = doc_steps()
    env = shell_env(kubeconfig, home)
    for name in NODES:
        await Kube(cluster).create("v1/nodes", node(name))
    async with controllers(cluster):
        for step in steps:
            for script in doc[step]:
                code, out, err = await run(["bash", "-euo", "pipefail", "-c", script], env)
                assert code == 0, f"step {step} failed:\n{script}\n{out}\n{err}"


def test_the_doc_has_the_steps_this_test_runs() -> None:
    steps = doc_steps()
    assert "Development" in steps and development_after() in steps
    assert [s for s in steps if s != "Development"] == [str(n) for n in range(1, len(steps))]
    assert any("crds/" in script for script in steps[development_after()])
    doc = DOC.read_text()
    assert all(placeholder in doc for placeholder in PLACEHOLDERS)


def applied(scripts: list[str]) -> list[Obj]:
    """Every object the scripts' `kubectl apply -k DIR` commands send (`-f crds/`: the CRDs)."""
    objects: list[Obj] = []
    for script in scripts:
        for target in re.findall(r"kubectl apply [^\n]*?-k (\S+)", script):
            objects += kustomize(ROOT / target)
        if re.search(r"kubectl apply [^\n]*-f crds/", script):
            objects += crds()
    return objects


def stored(cluster: Cluster) -> set[tuple[str, str | None, str]]:
    return {
        (str(o.raw.get("kind")), o.raw["metadata"].get("namespace"), o.raw["metadata"]["name"])
        for o in cluster.objects.values()
        if not o.deleted
    }


async def run_and_check(tmp_path: Path, steps: list[str]) -> Cluster:
    async with api_server(tmp_path) as (cluster, kubeconfig):
        await run_steps(cluster, kubeconfig, tmp_path, steps)
        scripts = [script for step in steps for script in doc_steps()[step]]
        expected = {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in applied(scripts)
        }
        assert len(expected) > 10
        assert expected - stored(cluster) == set()
        return cluster


async def test_production_steps_run_as_written(tmp_path: Path) -> None:
    cluster = await run_and_check(tmp_path, [s for s in doc_steps() if s != "Development"])
    assert cluster.obj("v1/secrets", "voicepool", "voicepool-redis") is not None
    labels = (cluster.obj("v1/nodes", None, NODES[0]) or {})["metadata"].get("labels") or {}
    assert labels.get("voicepool.dev/realtime") == "true"


async def test_development_overlay_runs_as_written(tmp_path: Path) -> None:
    await run_and_check(tmp_path, [development_after(), "Development"])


@pytest.mark.parametrize("how", [["apply", "-f", "crds/"], ["apply", "--server-side", "-f", "crds/"]])
async def test_crds_directory_applies_as_plain_files(tmp_path: Path, how: list[str]) -> None:
    """`-f crds/` sees only CRDs (the kustomization there is not an object kubectl tries to send)."""
    async with api_server(tmp_path) as (cluster, kubeconfig):
        code, out, err = await kubectl_run(kubeconfig, *how)
        assert code == 0, err
        names = sorted(c["metadata"]["name"] for c in crds())
        assert sorted(o["metadata"]["name"] for o in cluster.live(CRDS)) == names
        assert len(out.splitlines()) == len(names)
