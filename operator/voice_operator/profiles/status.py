"""Pure decisions for NodeTuningProfiles: which nodes to tune, which are tuned, label changes, status."""

from collections.abc import Iterable, Mapping
from typing import Any

from voice_operator.conditions import condition, merge_conditions


def node_matches(node: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def matching_nodes(nodes: Iterable[Mapping[str, Any]], selector: Mapping[str, str]) -> set[str]:
    return {str(n["metadata"]["name"]) for n in nodes if node_matches(n, selector)}


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def tuned_nodes(matching: set[str], tuner_pods: Iterable[Mapping[str, Any]]) -> set[str]:
    """A node is tuned when it matches the profile and its tuner pod verified the sysctls (Ready)."""
    ready = {str((p.get("spec") or {}).get("nodeName")) for p in tuner_pods if pod_ready(p)}
    return matching & ready


def label_changes(nodes: Iterable[Mapping[str, Any]], key: str, tuned: set[str]) -> dict[str, str | None]:
    """Node name -> new label value ("true" to add, None to remove) for nodes that need a write."""
    changes: dict[str, str | None] = {}
    for node in nodes:
        name = str(node["metadata"]["name"])
        has = (node.get("metadata", {}).get("labels") or {}).get(key) == "true"
        if name in tuned and not has:
            changes[name] = "true"
        elif name not in tuned and key in (node.get("metadata", {}).get("labels") or {}):
            changes[name] = None
    return changes


def profile_status(
    *,
    desired: int,
    tuned: int,
    generation: int | None,
    problem: tuple[str, str] | None,
    previous: Mapping[str, Any],
    now: str | None = None,
) -> dict[str, Any]:
    conds = []
    if problem is not None:
        conds.append(condition("Ready", False, problem[0], problem[1], generation))
        conds.append(condition("Degraded", True, problem[0], problem[1], generation))
    else:
        if desired == 0:
            conds.append(
                condition("Ready", False, "NoMatchingNodes", "no node matches the nodeSelector", generation)
            )
        elif tuned < desired:
            conds.append(condition("Ready", False, "Tuning", f"{tuned}/{desired} nodes verified", generation))
        else:
            conds.append(
                condition("Ready", True, "NodesTuned", f"{tuned}/{desired} nodes verified", generation)
            )
        conds.append(condition("Degraded", False, "AsExpected", "sysctls accepted", generation))
    status: dict[str, Any] = {
        "desiredNodes": desired,
        "tunedNodes": tuned,
        "conditions": merge_conditions(previous.get("conditions"), conds, now),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status
