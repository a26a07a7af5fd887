"""NetworkPolicies: default deny, agents reach only Redis/TURN/agents/DNS/HTTPS providers, Redis only from
agents and the operator, TURN relays only towards agents."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.deploy.manifests import Obj, named, of_kind, workloads

AGENT = {"app.kubernetes.io/name": "voice-agent"}
OPERATOR = {"app.kubernetes.io/name": "voicepool-operator"}
REDIS = {"app.kubernetes.io/name": "redis"}
TURN = {"app.kubernetes.io/name": "turn"}
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]


def peers(rules: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    return [peer for rule in rules for peer in rule.get(direction, [])]


def test_default_deny_both_directions(overlay: list[Obj]) -> None:
    deny = named(overlay, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_every_workload_is_covered_by_its_own_policy(overlay: list[Obj]) -> None:
    selectors = [p["spec"]["podSelector"].get("matchLabels", {}) for p in of_kind(overlay, "NetworkPolicy")]
    for obj, _ in workloads(overlay):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert any(sel and sel.items() <= labels.items() for sel in selectors), obj["metadata"]["name"]


def test_redis_reachable_only_from_agents_and_operator(overlay: list[Obj]) -> None:
    spec = named(overlay, "NetworkPolicy", "redis")["spec"]
    assert spec["podSelector"]["matchLabels"] == REDIS
    assert [p["podSelector"]["matchLabels"] for p in peers(spec["ingress"], "from")] == [AGENT, OPERATOR]
    assert all(p == [{"protocol": "TCP", "port": 6379}] for p in (r["ports"] for r in spec["ingress"]))
    assert spec["egress"] == []


def test_agent_egress_only_to_redis_turn_agents_and_public_https(overlay: list[Obj]) -> None:
    spec = named(overlay, "NetworkPolicy", "voice-agent")["spec"]
    assert spec["podSelector"]["matchLabels"] == AGENT
    in_cluster = [p["podSelector"]["matchLabels"] for p in peers(spec["egress"], "to") if "podSelector" in p]
    assert in_cluster == [REDIS, TURN, AGENT]
    blocks = [p["ipBlock"] for p in peers(spec["egress"], "to") if "ipBlock" in p]
    assert len(blocks) == 1
    excluded = [ipaddress.ip_network(c) for c in blocks[0]["except"]]
    for net in PRIVATE:
        assert any(ipaddress.ip_network(net).subnet_of(e) for e in excluded), net  # type: ignore[arg-type]
    internet_rule = next(r for r in spec["egress"] if any("ipBlock" in p for p in r["to"]))
    assert internet_rule["ports"] == [{"protocol": "TCP", "port": 443}]


def test_media_reaches_agents_only_through_turn(overlay: list[Obj]) -> None:
    spec = named(overlay, "NetworkPolicy", "voice-agent")["spec"]
    udp_rules = [r for r in spec["ingress"] if any(p["protocol"] == "UDP" for p in r["ports"])]
    assert udp_rules and all(
        [p["podSelector"]["matchLabels"] for p in r["from"]] == [TURN] for r in udp_rules
    )


def test_turn_relays_only_towards_agents_and_turn(overlay: list[Obj]) -> None:
    spec = named(overlay, "NetworkPolicy", "turn")["spec"]
    targets = [p["podSelector"]["matchLabels"] for p in peers(spec["egress"], "to")]
    assert targets == [AGENT, TURN]
    assert all("to" in rule for rule in spec["egress"])  # no rule without a destination (= anywhere)


def test_turn_relay_range_matches_its_config(overlay: list[Obj]) -> None:
    conf = named(overlay, "ConfigMap", "turn-config")["data"]["turnserver.conf"]
    settings = dict(
        line.split("=", 1) for line in conf.splitlines() if "=" in line and not line.startswith("#")
    )
    relay = (int(settings["min-port"]), int(settings["max-port"]))
    spec = named(overlay, "NetworkPolicy", "turn")["spec"]
    ranges = {(p["port"], p.get("endPort")) for r in spec["ingress"] for p in r["ports"] if p.get("endPort")}
    assert ranges == {relay}
