"""The redis-ha component: a primary, two replicas and three Sentinels, one per node, with PDBs, the
same hardening and policies as the rest, and NetworkPolicies that open only the flows they need."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy import test_network, test_policy
from tests.deploy.manifests import (
    MANIFESTS,
    Obj,
    named,
    of_kind,
    operator_rendered,
    render,
    render_with_components,
)
from tests.deploy.schemas import problems
from tests.deploy.test_network import AGENT, OPERATOR, REDIS, peers

SENTINEL = {"app.kubernetes.io/name": "redis-sentinel"}


@pytest.fixture(scope="module", params=["overlays/dev", "overlays/prod"])
def ha(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return render_with_components(str(request.param), ["components/redis-ha"], tmp_path_factory.mktemp("ha"))


# The network checks every overlay passes (tests/deploy/test_network.py), over this component too.
NETWORK: list[Callable[[list[Obj]], None]] = [
    test_network.test_default_deny_both_directions,
    test_network.test_every_workload_is_covered_by_its_own_policy,
]


@pytest.mark.parametrize("check", test_policy.WORKLOAD_CHECKS, ids=lambda c: c.__name__)
def test_component_meets_every_deployment_policy(ha: list[Obj], check: Callable[[list[Obj]], None]) -> None:
    examples = render("examples")
    check(ha + examples + operator_rendered(examples))


@pytest.mark.parametrize("check", NETWORK, ids=lambda c: c.__name__)
def test_component_meets_every_network_policy_check(
    ha: list[Obj], check: Callable[[list[Obj]], None]
) -> None:
    check(ha)


def test_objects_are_valid_and_spread_one_per_node(ha: list[Obj]) -> None:
    redis, sentinel = named(ha, "StatefulSet", "redis"), named(ha, "StatefulSet", "redis-sentinel")
    changed = [
        redis,
        sentinel,
        *of_kind(ha, "PodDisruptionBudget"),
        named(ha, "NetworkPolicy", "redis-sentinel"),
    ]
    assert [problems(o) for o in changed] == [[] for _ in changed]
    for sts, labels in ((redis, REDIS), (sentinel, SENTINEL)):
        assert sts["spec"]["replicas"] == 3
        anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        [term] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}
    budgets = {p["metadata"]["name"]: p["spec"] for p in of_kind(ha, "PodDisruptionBudget")}
    assert budgets["redis"] == {"maxUnavailable": 1, "selector": {"matchLabels": REDIS}}
    assert budgets["redis-sentinel"] == {"maxUnavailable": 1, "selector": {"matchLabels": SENTINEL}}
    assert named(ha, "Service", "redis-headless")["spec"]["publishNotReadyAddresses"] is True
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["sh", "/etc/redis/scripts/redis-start.sh"]


def test_sentinels_reachable_only_from_the_pool_and_the_group(ha: list[Obj]) -> None:
    spec = named(ha, "NetworkPolicy", "redis-sentinel")["spec"]
    assert spec["podSelector"]["matchLabels"] == SENTINEL
    assert [p["podSelector"]["matchLabels"] for p in peers(spec["ingress"], "from")] == [
        AGENT,
        OPERATOR,
        REDIS,
        SENTINEL,
    ]
    redis = named(ha, "NetworkPolicy", "redis")["spec"]
    assert [p["podSelector"]["matchLabels"] for p in peers(redis["ingress"], "from")] == [
        AGENT,
        OPERATOR,
        REDIS,
        SENTINEL,
    ]
    assert [p["podSelector"]["matchLabels"] for p in peers(redis["egress"], "to")] == [REDIS, SENTINEL]
    for name in ("voice-agent", "voicepool-operator"):
        egress = named(ha, "NetworkPolicy", name)["spec"]["egress"]
        to_sentinels = [r for r in egress if any(p.get("podSelector", {}).get("matchLabels") == SENTINEL
                                                 for p in r.get("to", []))]  # fmt: skip
        assert [r["ports"] for r in to_sentinels] == [[{"protocol": "TCP", "port": 26379}]], name


@pytest.mark.parametrize("script", ["redis-start.sh", "sentinel-start.sh"])
def test_start_scripts_are_valid_posix_shell(script: str) -> None:
    path = MANIFESTS / "components" / "redis-ha" / script
    out = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode == 0, out.stderr


def run_redis_start(tmp_path: Path, hostname: str, sentinels_say: str | None) -> list[str]:
    """redis-start.sh with stand-ins for hostname, redis-cli and redis-server: the server's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = f"echo {sentinels_say}; echo 6379" if sentinels_say else "exit 1"
    fakes = {
        "hostname": f"echo {hostname}",
        "redis-cli": answer,
        "redis-server": 'for a in "$@"; do echo "$a"; done',
        "sleep": "exit 0",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "password").write_text("pw")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "POD_NAMESPACE": "ns",
        "REDIS_PASSWORD_FILE": str(tmp_path / "password"),
    }
    script = MANIFESTS / "components" / "redis-ha" / "redis-start.sh"
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=10, check=True)
    return out.stdout.split()


NAME = "redis-{}.redis-headless.ns.svc.cluster.local"


def test_start_script_joins_the_primary_the_sentinels_name(tmp_path: Path) -> None:
    """A restarted former primary comes back as a replica of the promoted one, not as a second primary."""
    args = run_redis_start(tmp_path, "redis-0", sentinels_say=NAME.format(2))
    assert args[args.index("--replicaof") :][:3] == ["--replicaof", NAME.format(2), "6379"]
    assert args[args.index("--replica-announce-ip") + 1] == NAME.format(0)


def test_start_script_first_start_makes_redis_0_the_primary(tmp_path: Path) -> None:
    assert "--replicaof" not in run_redis_start(tmp_path, "redis-0", sentinels_say=None)


def test_start_script_first_start_makes_the_others_replicas_of_redis_0(tmp_path: Path) -> None:
    args = run_redis_start(tmp_path, "redis-1", sentinels_say=None)
    assert args[args.index("--replicaof") :][:3] == ["--replicaof", NAME.format(0), "6379"]
