"""`kubectl explain` has something to say for every field of our CRDs.

kubectl prints "<no description>" for a property without one, so a field added without a
description is caught here, whoever adds it: in the schemas, and as the real kubectl explains them
(served by the test API server as an API server publishes a CRD's schema).
"""

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.kubeapi import api_server, kubectl_run
from tests.operator import crdschema
from tests.operator.cluster import crds
from voice_operator.profiles.spec import SYSCTL_ALLOWLIST

OURS = [doc for doc in crds() if doc["spec"]["group"] == "voicepool.dev"]


def fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property under `node` with its dotted path, through arrays and maps of objects."""
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from fields(child, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict):
        yield from fields(items, f"{path}[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from fields(extra, f"{path}{{}}")


@pytest.mark.parametrize("crd", OURS, ids=lambda d: d["metadata"]["name"])
def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    kind = crd["spec"]["names"]["kind"]
    schema = crdschema.schema(kind)
    walked = list(fields(schema, kind))
    assert len(walked) > 10
    undescribed = [path for path, node in walked if not str(node.get("description") or "").strip()]
    assert undescribed == []


def test_the_sysctls_description_lists_the_allowlist() -> None:
    sysctls = crdschema.schema("NodeTuningProfile")["properties"]["spec"]["properties"]["sysctls"]
    missing = sorted(key for key in SYSCTL_ALLOWLIST if key not in sysctls["description"])
    assert missing == []


def explained_paths(node: dict[str, Any], path: str) -> Iterator[str]:
    """The kubectl explain path of every object among the fields (arrays are transparent to it)."""
    node = node.get("items") if isinstance(node.get("items"), dict) else node
    if node.get("properties"):
        yield path
        for name, child in node["properties"].items():
            yield from explained_paths(child, f"{path}.{name}")


async def test_kubectl_explain_describes_every_field(tmp_path: pathlib.Path) -> None:
    async with api_server(tmp_path, with_crds=True) as (_, kubeconfig):
        paths = [
            path
            for crd in OURS
            for path in explained_paths(
                crdschema.schema(crd["spec"]["names"]["kind"]), crd["spec"]["names"]["plural"]
            )
        ]
        assert len(paths) > 2 * len(OURS)
        running = asyncio.Semaphore(4)

        async def explain(path: str) -> tuple[str, int, str, str]:
            async with running:
                return (path, *await kubectl_run(kubeconfig, "explain", path))

        for path, code, out, err in await asyncio.gather(*(explain(p) for p in paths)):
            assert code == 0, (path, err)
            assert "FIELDS:" in out and "<no description>" not in out, out
