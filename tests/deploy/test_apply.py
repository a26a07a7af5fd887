"""`kubectl apply` of the rendered overlays and examples against an API server (kmock), as a platform
team would run it: every object is accepted, and a second apply changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.deploy import kubeapi
from tests.deploy.kubeapi import kubectl_run
from tests.deploy.manifests import Obj, named, render, rendered_yaml
from voice_operator.config import OperatorConfig


@pytest_asyncio.fixture()
async def api_server(tmp_path: Path) -> AsyncIterator[Path]:
    """A kmock API server with our CRDs and cert-manager's kinds; yields a kubeconfig for it."""
    async with kubeapi.api_server(tmp_path, with_crds=True) as (_, kubeconfig):
        yield kubeconfig


async def apply(kubeconfig: Path, manifest: str) -> list[str]:
    # Client-side apply, validated by the server as kubectl does by default (the test API server
    # checks no schema: the objects were validated against Kubernetes' own in test_render.py).
    code, out, err = await kubectl_run(kubeconfig, "apply", "-f", "-", stdin=manifest)
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize(
    ("kustomizations", "pools"),
    [(("overlays/dev",), {"offline"}), (("overlays/prod", "examples"), {"offline", "cloud"})],
    ids=["dev", "prod+examples"],
)
async def test_apply_then_reapply_unchanged(
    api_server: Path, kustomizations: tuple[str, ...], pools: set[str]
) -> None:
    manifest = "---\n".join(rendered_yaml(k) for k in kustomizations)
    expected = sum(len(render(k)) for k in kustomizations)
    first = await apply(api_server, manifest)
    assert len(first) == expected
    assert [line for line in first if not line.endswith(" created")] == []
    second = await apply(api_server, manifest)
    assert len(second) == expected
    # kubectl re-sends a PDB's selector on every apply (its patch strategy is "replace"), so PDBs
    # read "configured" even when nothing changed; everything else must be untouched.
    assert [
        line for line in second if not line.endswith(" unchanged") and "poddisruptionbudget" not in line
    ] == []

    for pool in pools:
        code, out, err = await kubectl_run(
            api_server, "get", f"voiceagentpools.voicepool.dev/{pool}", "-n", "voicepool", "-o", "json"
        )
        assert code == 0, err
        stored = json.loads(out)
        assert stored["spec"] == next(
            o["spec"]
            for k in kustomizations
            for o in render(k)
            if o["metadata"]["name"] == pool and o["kind"] == "VoiceAgentPool"
        )


def test_operator_accepts_its_deployment_env(tmp_path: Path) -> None:
    """The operator's settings in the manifests parse (a bad value would crash-loop the pod)."""
    deployment = named(render("overlays/prod"), "Deployment", "voicepool-operator")
    container: Obj = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for name in ("VOICE_OPERATOR_TLS_CERT", "VOICE_OPERATOR_TLS_KEY"):
        # The files come from the mounted Secret; the operator checks they exist, so stand them in.
        assert any(env[name].startswith(m.rstrip("/") + "/") for m in mounts), (name, env[name], mounts)
        local = tmp_path / Path(env[name]).name
        local.write_text("stand-in")
        env[name] = str(local)
    config = OperatorConfig.from_env(env)
    assert config.tls_cert and config.tls_key
    assert config.tuning_namespace == "voicepool-tuning"
    assert config.tuner_image == "busybox:1.36.1"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "health": config.health_port,
        "metrics": config.metrics_port,
        "metrics-api": config.external_metrics_port,
        "scaler": config.scaler_port,
        "waker": config.waker_port,
    }
    service = named(render("overlays/prod"), "Service", "voicepool-operator")
    # The ScaledObjects' scalerAddress reaches the scaler through this Service.
    host, port = config.scaler_address.rsplit(":", 1)
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["scaler"] == int(port)
