"""The operator's Kubernetes client, two ways: its own aiohttp subset (kube.py + ensure.py) against
the official `kubernetes` client with server-side apply, for the choice in docs/operator.md.

One pool's owned objects (ServiceAccount, Service, PDB, Deployment, HPA, as render_pool makes them)
are reconciled against kmock three times each way: cold (nothing exists), steady (nothing changed)
and changed (a new image: only the Deployment differs). Per reconcile: API requests, writes
(requests that create or change something: POST, PATCH, PUT, DELETE), and the latency, median over
`--rounds` repetitions on a fresh cluster. The prototype sends only the apply calls (PATCH with
`application/apply-patch+yaml`, fieldManager, force): it is what owned objects would cost, not a
rewrite.

kmock does not implement server-side apply: it takes the apply body as a merge patch of an
existing object and answers 404 for a missing one. The prototype's cluster adds the minimum (an
apply on a missing object creates it) and nothing else: no managedFields, no field-ownership
conflicts, and an unchanged apply still bumps resourceVersion. A real API server does more work
per apply (it computes and stores managedFields); the latency here is a floor for the apply path.

The prototype uses the client's asyncio variant (`kubernetes.aio`, aiohttp underneath, like kopf
and kube.py), so both ways run on one event loop.

Needs the official client, which the project does not depend on: `uv pip install kubernetes`, then
`python -m bench.operator_client`; results in bench/results/operator-client.json. Not part of
`make bench` (a decision record, not a figure that moves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import pathlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import kmock
from kmock._internal import enums, rendering

from bench.common import write
from tests.operator import samples
from tests.operator.cluster import Cluster
from voice_operator import ensure as ensure_module
from voice_operator import kube as kube_module
from voice_operator.ensure import ensure
from voice_operator.kube import KubeClient, Obj, Ref
from voice_operator.objects import Owner
from voice_operator.pools.render import render_pool
from voice_operator.pools.spec import parse_pool_spec

APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "voicepool-operator"
WRITES = {"POST", "PATCH", "PUT", "DELETE"}
NAMESPACE = "bench"


class ApplyCluster(Cluster):
    """Just enough server-side apply for the prototype: an apply to a missing object creates it."""

    async def _handle(self, request: rendering.Request) -> Any:
        if (
            request.action == enums.action.UPDATE
            and APPLY in request.headers.get("Content-Type", "")
            and request.resource is not None
            and self._current(request) is None
        ):
            create = attrs.evolve(
                request,
                method=enums.method.POST,
                action=enums.action.CREATE,
                url=request.url.with_path(request.url.path.rsplit("/", 1)[0]),
                name=None,
            )
            self._replace_recorded(request, create)
            request = create
        return await super()._handle(request)


def owned_objects(image: str) -> list[Obj]:
    body = samples.pool("demo", NAMESPACE, image=image)
    body["metadata"]["uid"] = "uid-bench-pool"
    return render_pool(Owner.from_body(body), parse_pool_spec(body["spec"]))


async def current_way(kube: KubeClient, objects: list[Obj], cold: bool) -> None:
    await asyncio.gather(*(ensure(kube, o, lookup=not cold) for o in objects))


async def ssa_apply(api: Any, obj: Obj) -> None:
    """One object, server-side applied: the whole of what replaces ensure() and kube.py's writes."""
    method, url, headers, body, _ = await api.param_serialize(
        "PATCH",
        Ref.of(obj).path(),
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": APPLY, "Accept": "application/json"},
        body=obj,
        auth_settings=["BearerToken"],
    )
    response = await api.call_api(method, url, header_params=headers, body=body)
    await response.read()
    if response.status >= 300:
        raise RuntimeError(f"apply {Ref.of(obj).path()}: {response.status} {response.data[:200]!r}")


async def ssa_way(api: Any, objects: list[Obj]) -> None:
    await asyncio.gather(*(ssa_apply(api, o) for o in objects))


def counts(cluster: Cluster, since: int) -> tuple[int, int]:
    requests = cluster.log[since:]
    return len(requests), sum(r.method.value in WRITES for r in requests)


Reconcile = Callable[[list[Obj], bool], Awaitable[None]]
Connect = Callable[[str], AbstractAsyncContextManager[Reconcile]]


async def measure(connect: Connect, rounds: int) -> dict[str, dict[str, float]]:
    """Each round on a fresh cluster, with a client made before the clock starts (both ways pay for
    their first connection in the cold phase)."""
    phases: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        async with (
            ApplyCluster(strict=False) as cluster,
            kmock.Server(cluster, host="127.0.0.1"),
            connect(str(cluster.url).rstrip("/")) as reconcile,
        ):
            for phase, image, cold in (
                ("cold", "voicepool/agent:1.0", True),
                ("steady", "voicepool/agent:1.0", False),
                ("changed", "voicepool/agent:1.1", False),
            ):
                objects = owned_objects(image)
                since = len(cluster.log)
                started = time.perf_counter()
                await reconcile(objects, cold)
                elapsed = (time.perf_counter() - started) * 1000
                requests, writes = counts(cluster, since)
                got = phases.setdefault(phase, {"requests": [], "writes": [], "latency_ms": []})
                got["requests"].append(requests)
                got["writes"].append(writes)
                got["latency_ms"].append(elapsed)
                stored = [cluster.peek(*where(o)) for o in objects]
                assert all(stored), f"{phase}: an owned object is missing"
    return {
        phase: {key: round(statistics.median(values), 2) for key, values in got.items()}
        for phase, got in phases.items()
    }


def where(obj: Obj) -> tuple[str, str | None, str]:
    """The cluster's resource key of an object (as tests/operator/expect.py spells them)."""
    ref = Ref.of(obj)
    group = "v1" if ref.api_version == "v1" else ref.api_version
    plural = kube_module.KINDS[ref.kind][0]
    return f"{group}/{plural}", ref.namespace, str(ref.name)


def lines_of_code(*objects: Any) -> int:
    """Non-blank lines that are not comments or docstrings' text, roughly: source lines as written."""
    total = 0
    for obj in objects:
        total += sum(1 for line in inspect.getsource(obj).splitlines() if line.strip())
    return total


async def run(rounds: int) -> dict[str, Any]:
    import kubernetes
    import kubernetes.aio.client

    @contextlib.asynccontextmanager
    async def current(url: str) -> AsyncIterator[Reconcile]:
        kube = KubeClient(lambda: kmock_login(url))
        try:
            yield lambda objects, cold: current_way(kube, objects, cold)
        finally:
            await kube.close()

    @contextlib.asynccontextmanager
    async def official(url: str) -> AsyncIterator[Reconcile]:
        async with kubernetes.aio.client.ApiClient(kubernetes.aio.client.Configuration(host=url)) as api:
            yield lambda objects, cold: ssa_way(api, objects)

    return {
        "objects_per_pool": len(owned_objects("x")),
        "rounds": rounds,
        "kubernetes_client": kubernetes.__version__,
        "current": {
            "phases": await measure(current, rounds),
            "lines": {"kube.py": lines_of_code(kube_module), "ensure.py": lines_of_code(ensure_module)},
        },
        "official_ssa": {
            "phases": await measure(official, rounds),
            "lines": {"apply": lines_of_code(ssa_apply, ssa_way)},
        },
        "notes": (
            "kmock has no server-side apply: the prototype's cluster creates on an apply to a missing "
            "object and otherwise merges, without managedFields; the apply latency is a floor"
        ),
    }


def kmock_login(url: str) -> Any:
    import kopf

    return kopf.ConnectionInfo(server=url, insecure=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    print(json.dumps(result, indent=2))
    write(pathlib.Path(__file__).stem.replace("_", "-"), result)


if __name__ == "__main__":
    main()
