"""The examples agree with the CRDs (schema and CEL rules) and with the operator that reads them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.manifests import Obj, named, of_kind, operator_rendered, render
from tests.deploy.schemas import custom_resource_problems, problems
from voice_operator import constants as c
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.profiles.spec import parse_profile_spec

HOST_NETWORK_EXAMPLE = "examples/host-network-pool"

# The kernel tuning for real-time voice that docs/operator.md ("NodeTuningProfile") shows: UDP
# buffers for WebRTC, low-latency TCP, BBR.
REALTIME_SYSCTLS = {
    "net.core.rmem_max": "4194304",
    "net.core.wmem_max": "4194304",
    "net.ipv4.udp_rmem_min": "16384",
    "net.ipv4.tcp_low_latency": "1",
    "net.ipv4.tcp_congestion_control": "bbr",
}


def test_examples_are_valid_custom_resources(examples: list[Obj]) -> None:
    assert {o["kind"] for o in examples} == {"VoiceAgentPool", "NodeTuningProfile"}
    assert {o["metadata"]["name"]: custom_resource_problems(o) for o in examples} == {
        o["metadata"]["name"]: [] for o in examples
    }


def test_operator_accepts_the_examples(examples: list[Obj]) -> None:
    for obj in examples:
        if obj["kind"] == "VoiceAgentPool":
            parse_pool_spec(obj["spec"])
        else:
            parse_profile_spec(obj["spec"])


def test_cloud_pool_uses_the_three_providers_through_secret_refs(examples: list[Obj]) -> None:
    spec = named(examples, "VoiceAgentPool", "cloud")["spec"]
    providers = {stage: p["provider"] for stage, p in spec["providers"].items()}
    assert providers == {"stt": "deepgram", "llm": "groq", "tts": "elevenlabs"}
    for p in spec["providers"].values():
        assert set(p) <= {"provider", "model", "secretRef", "baseURL"}
        assert p["secretRef"]["name"]
    assert spec["redis"] == {"secretRef": {"name": "voicepool-redis", "key": "url"}}
    assert spec["ice"]["turn"]["secretRef"]["name"] == "voicepool-turn"
    assert spec["resources"]["requests"] == spec["resources"]["limits"]  # Guaranteed QoS
    assert spec["tuningProfile"] == named(examples, "NodeTuningProfile", "realtime-voice")["metadata"]["name"]


def test_offline_pool_needs_no_keys(examples: list[Obj]) -> None:
    spec = named(examples, "VoiceAgentPool", "offline")["spec"]
    assert all(p == {"provider": "local"} for p in spec["providers"].values())


def test_tuning_profile_carries_the_realtime_sysctls(examples: list[Obj]) -> None:
    sysctls = named(examples, "NodeTuningProfile", "realtime-voice")["spec"]["sysctls"]
    assert sysctls.items() >= REALTIME_SYSCTLS.items()


def test_host_network_example_is_opt_in_and_valid() -> None:
    """Kept out of the examples applied together (only the tuner may use the host there), and valid alone."""
    objs = render(HOST_NETWORK_EXAMPLE)
    assert not any(o["metadata"]["name"] == "edge" for o in render("examples"))
    assert {o["metadata"]["name"]: problems(o) for o in objs} == {o["metadata"]["name"]: [] for o in objs}
    pool = named(objs, "VoiceAgentPool", "edge")
    spec = parse_pool_spec(pool["spec"])
    assert spec.host_network and spec.host_candidates.announce_from_node
    # Host-network pods are refused by the restricted and baseline Pod Security levels.
    namespace = named(objs, "Namespace", pool["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_host_network_example_renders_one_hardened_agent_per_node() -> None:
    rendered = operator_rendered(render(HOST_NETWORK_EXAMPLE))
    assert {o["metadata"]["name"]: problems(o) for o in rendered} == {
        o["metadata"]["name"]: [] for o in rendered
    }
    pod = named(rendered, "Deployment", "edge")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (agent,) = pod["containers"]
    assert agent["securityContext"]["runAsNonRoot"] and agent["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    assert not agent["securityContext"]["privileged"] and agent["securityContext"]["readOnlyRootFilesystem"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["VOICE_ICE_ANNOUNCED_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert "docker0" in env["VOICE_ICE_EXCLUDE_INTERFACES"]["value"].split(",")


def test_keda_example_scales_to_zero_through_a_scaledobject_keda_accepts(examples: list[Obj]) -> None:
    pool = named(examples, "VoiceAgentPool", "on-demand")
    spec = parse_pool_spec(pool["spec"])
    assert (spec.engine, spec.min_replicas) == ("keda", 0)
    assert spec.buffer_sessions == "50%", "a buffer of whole sessions would keep an agent up"
    rendered = operator_rendered([pool])
    assert not of_kind(rendered, "HorizontalPodAutoscaler")
    scaled = named(rendered, "ScaledObject", "on-demand")
    assert problems(scaled) == []
    assert scaled["spec"]["minReplicaCount"] == 0
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external" and trigger["metadata"] == {"scalerAddress": c.SCALER_ADDRESS}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.pop("triggers"), "'triggers' is a required property"),
        (lambda s: s.update(triggers=[]), "should be non-empty"),
        (lambda s: s.update(minReplicaCount=5, maxReplicaCount=2), "minReplicaCount must be less than"),
        (lambda s: s.update(pollingInterval=0), "less than the minimum of 1"),
        (lambda s: s.update(pollinginterval=5), ".spec.pollinginterval: unknown field"),
        (lambda s: s["triggers"][0].pop("metadata"), "'metadata' is a required property"),
    ],
)
def test_scaledobject_schema_refuses_what_keda_would(
    examples: list[Obj], mutate: Callable[[Obj], Any], expected: str
) -> None:
    """The ScaledObject check above is only worth something if KEDA's schema bites."""
    scaled = named(
        operator_rendered([named(examples, "VoiceAgentPool", "on-demand")]), "ScaledObject", "on-demand"
    )
    mutate(scaled["spec"])
    found = problems(scaled)
    assert any(expected in p for p in found), found


def test_dev_overlay_pool_is_a_valid_single_agent_pool() -> None:
    pool = named(render("overlays/dev"), "VoiceAgentPool", "offline")
    assert custom_resource_problems(pool) == []
    assert pool["spec"]["replicas"] == {"min": 1, "max": 1}


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("VoiceAgentPool", lambda s: s.pop("image"), "image"),
        ("VoiceAgentPool", lambda s: s["replicas"].update(min=5, max=2), "replicas.min"),
        ("VoiceAgentPool", lambda s: s["resources"]["limits"].update(cpu="2"), "Guaranteed"),
        ("VoiceAgentPool", lambda s: s["providers"]["stt"].pop("secretRef"), "secretRef"),
        ("NodeTuningProfile", lambda s: s["sysctls"].update({"kernel.panic": "1"}), "allowlist"),
    ],
)
def test_validation_rejects_broken_examples(
    examples: list[Obj], kind: str, mutate: Callable[[Obj], Any], expected: str
) -> None:
    """The checks above are only worth something if they catch what the API server would reject."""
    obj = copy.deepcopy(next(o for o in examples if o["kind"] == kind and o["metadata"]["name"] != "offline"))
    mutate(obj["spec"])
    found = problems(obj)
    assert any(expected in p for p in found), found
