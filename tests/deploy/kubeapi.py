"""An API server (kmock) that the real kubectl can talk to, as a platform team's cluster would answer.

Our CRDs are not installed here: `kubectl apply -f crds/` installs them, as on a real cluster. The
kinds of the prerequisites docs/deploy.md names (cert-manager, the Prometheus Operator) are known,
as if their projects had been installed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import kmock
import yaml

from tests.deploy.manifests import ROOT, kubectl
from tests.operator.cluster import Cluster

PREREQUISITES = {
    "cert-manager.io/v1/issuers": "Issuer",
    "cert-manager.io/v1/certificates": "Certificate",
    "monitoring.coreos.com/v1/podmonitors": "PodMonitor",
    "monitoring.coreos.com/v1/servicemonitors": "ServiceMonitor",
    "monitoring.coreos.com/v1/prometheusrules": "PrometheusRule",
}
VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


def write_kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def api_server(workdir: Path, *, with_crds: bool = False) -> AsyncIterator[tuple[Cluster, Path]]:
    """A kmock API server knowing the built-in kinds and the prerequisites' (and ours, if asked);
    yields it with a kubeconfig for it."""
    async with Cluster(strict=False) as cluster, kmock.Server(cluster, host="127.0.0.1"):
        if with_crds:
            cluster.install_crds()
        else:
            cluster.resources.load_bundled()
        for key, kind in PREREQUISITES.items():
            cluster.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=True, verbs=VERBS
            )
        yield cluster, write_kubeconfig(workdir / "kubeconfig", str(cluster.url).rstrip("/"))


def shell_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    """A shell whose `kubectl` is the project's and whose cluster is the test's (nothing else's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(
        PATH=os.pathsep.join([str(Path(kubectl()).parent), env.get("PATH", "")]),
        KUBECONFIG=str(kubeconfig),
        HOME=str(home),  # kubectl's discovery cache goes there, not into the user's ~/.kube
    )
    return env


async def run(
    argv: list[str], env: Mapping[str, str] | None = None, stdin: str = "", timeout: float = 120
) -> tuple[int, str, str]:
    """A process in the repository root, as a platform engineer runs the docs' commands."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def kubectl_run(kubeconfig: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    return await run([kubectl(), "--kubeconfig", str(kubeconfig), *args], stdin=stdin)
