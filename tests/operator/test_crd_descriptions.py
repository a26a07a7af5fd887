"""`kubectl explain` has something to say for every field of our CRDs.

kubectl prints "<no description>" for a property without one, so a field added without a
description is caught here, whoever adds it.
"""

from collections.abc import Iterator
from typing import Any

import pytest

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
