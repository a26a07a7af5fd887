"""The operator's module layout (docs/operator.md, "Code layout"): who may import whom, and no circle."""

import ast
import graphlib
import pathlib

import pytest

from tests.operator.cluster import ROOT

PACKAGE = ROOT / "operator" / "voice_operator"
KINDS = ("pools", "profiles")
# Desired state and decisions: no API client, no kopf, no memo.
PURE = {
    "pools.spec",
    "pools.scaling",
    "pools.deployment",
    "pools.render",
    "pools.status",
    "profiles.spec",
    "profiles.render",
    "profiles.status",
}
IO = {"kopf", "aiohttp", "voice_operator.kube", "voice_operator.ensure", "voice_operator.memo"}
WIRING = {"__main__", "registry", "lifecycle", "metrics_api"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module (relative to voice_operator) -> every module it imports, as written (absolute)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[module_name(path)] = names
    return found


def ours(names: set[str], modules: set[str]) -> set[str]:
    """The operator's own modules among the imported names (an imported module, not a name in one)."""
    return {n.removeprefix("voice_operator.") for n in names if n.removeprefix("voice_operator.") in modules}


def test_no_import_circle() -> None:
    graph = imports()
    modules = set(graph)
    order = graphlib.TopologicalSorter({m: ours(names, modules) for m, names in graph.items()})
    order.prepare()  # raises CycleError naming the circle


def test_shared_modules_know_no_kind_and_kinds_not_each_other() -> None:
    graph = imports()
    modules = set(graph)
    for module, names in graph.items():
        used = ours(names, modules)
        kind = module.split(".")[0] if module.split(".")[0] in KINDS else None
        if module in WIRING or module in KINDS:
            continue
        if kind is None:
            assert not {u for u in used if u.split(".")[0] in KINDS}, f"{module} imports a kind"
        else:
            other = {k for k in KINDS if k != kind}
            assert not {u for u in used if u.split(".")[0] in other}, f"{module} imports another kind"


def test_desired_state_is_pure_and_reconcilers_leave_kopf_to_the_handlers() -> None:
    graph = imports()
    for module in PURE:
        assert not {n for n in graph[module] if n in IO or n.split(".")[0] in IO}, module
    for kind in KINDS:
        assert "kopf" not in graph[f"{kind}.reconcile"], f"{kind}.reconcile posts or raises through kopf"
        users = {m for m, names in graph.items() if f"voice_operator.{kind}.handlers" in names}
        assert users == {"registry"}, f"{kind}.handlers is registered by registry.py alone, not {users}"


@pytest.mark.parametrize("server", ["metrics_api", "pools.scaler"])
def test_the_metrics_api_and_the_external_scaler_only_read(server: str) -> None:
    """They may look pools up and read their load; reconciling and status writes are not in reach."""
    graph = imports()
    modules = set(graph)
    reach, todo = set(), [server]
    while todo:
        for used in ours(graph[todo.pop()], modules) - reach:
            reach.add(used)
            todo.append(used)
    writers = {f"{kind}.{m}" for kind in KINDS for m in ("reconcile", "handlers")} | {"status_io", "ensure"}
    assert not reach & writers, reach & writers
