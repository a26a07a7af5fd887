"""The CRDs as the API server would enforce them: structure, defaults, CEL rules, columns, subresources."""

import pathlib
import re
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.operator import crdschema, samples
from tests.operator.cluster import ROOT, crds
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.profiles.spec import SYSCTL_ALLOWLIST, parse_profile_spec

# The oldest Kubernetes the manifests support (docs/deploy.md) and the newest the validator knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())


@pytest.mark.parametrize("doc", crds(), ids=lambda d: d["metadata"]["name"])
def test_every_crd_is_a_valid_apiextensions_v1_object(doc: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def test_pool_crd_names_scope_columns_and_subresources() -> None:
    crd = crdschema.crd("VoiceAgentPool")
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["group"] == "voicepool.dev"
    assert crd["spec"]["names"]["shortNames"] == ["vap"]
    version = crdschema.version("VoiceAgentPool")
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas.min",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    default_columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default_columns == ["Ready", "Replicas", "Sessions", "Capacity", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Sessions"]["jsonPath"] == ".status.activeSessions"
    assert columns["Capacity"]["jsonPath"] == ".status.capacity"
    assert columns["Age"]["type"] == "date"


def test_profile_crd_is_cluster_scoped_with_status_and_columns() -> None:
    crd = crdschema.crd("NodeTuningProfile")
    assert crd["spec"]["scope"] == "Cluster"
    version = crdschema.version("NodeTuningProfile")
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Ready", "Desired", "Tuned", "Age"]


def test_status_schema_holds_every_field_the_operator_writes() -> None:
    props = crdschema.schema("VoiceAgentPool")["properties"]["status"]["properties"]
    for field in (
        "replicas",
        "readyReplicas",
        "activeSessions",
        "drainingAgents",
        "movingSessions",
        "capacity",
        "desiredReplicas",
        "observedGeneration",
        "conditions",
        "selector",
    ):
        assert field in props
    profile_props = crdschema.schema("NodeTuningProfile")["properties"]["status"]["properties"]
    assert {"desiredNodes", "tunedNodes", "conditions"} <= set(profile_props)


def test_minimal_pool_is_defaulted_like_the_operator_defaults_it() -> None:
    stored, errors = crdschema.admit(samples.pool())
    assert errors == []
    spec = stored["spec"]
    assert spec["replicas"] == {"min": 1, "max": 10}
    assert spec["sessionsPerAgent"] == 2
    assert spec["bufferSessions"] == 0
    assert spec["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
    assert spec["service"] == {
        "type": "ClusterIP",
        "port": 80,
        "sessionAffinity": "ClientIP",
        "timeoutSeconds": 10800,
    }
    assert spec["session"] == {"ttlSeconds": 3600, "drainTimeoutSeconds": 300, "exposeTranscripts": False}
    assert spec["turn"] == samples.TURN_DEFAULTS
    assert spec["providers"]["stt"] == {"provider": "local"}
    # The API server's defaults and the operator's own defaults agree.
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec(samples.pool()["spec"])


def test_full_pool_and_profile_are_admitted() -> None:
    assert crdschema.admit(samples.cloud_pool())[1] == []
    assert crdschema.admit(samples.pool(bufferSessions="25%"))[1] == []
    scale_to_zero = samples.pool(autoscaling={"engine": "keda"}, replicas={"min": 0, "max": 3})
    assert crdschema.admit(scale_to_zero)[1] == []
    assert crdschema.admit(samples.host_network_pool())[1] == []
    for announce in ({"address": "203.0.113.7"}, {"address": "2001:db8::7"}, {"fromNode": True}):
        assert crdschema.admit(samples.pool(ice={"announce": announce}))[1] == []
    assert crdschema.admit(samples.profile())[1] == []


INVALID_POOLS: list[tuple[str, dict[str, Any], str]] = [
    (
        "min>max",
        {"replicas": {"min": 5, "max": 2}},
        "replicas.min must be less than or equal to replicas.max",
    ),
    ("min>default max", {"replicas": {"min": 11}}, "replicas.min must be less than or equal to replicas.max"),
    ("zero agents with the HPA", {"replicas": {"min": 0, "max": 2}}, "needs autoscaling.engine keda"),
    (
        "zero agents, engine hpa",
        {"autoscaling": {"engine": "hpa"}, "replicas": {"min": 0}},
        "needs autoscaling.engine keda",
    ),
    ("unknown engine", {"autoscaling": {"engine": "knative"}}, "autoscaling.engine: 'knative'"),
    ("zero sessions", {"sessionsPerAgent": 0}, "sessionsPerAgent must be greater than 0"),
    ("negative sessions", {"sessionsPerAgent": -3}, "sessionsPerAgent must be greater than 0"),
    (
        "negative buffer",
        {"bufferSessions": -1},
        "bufferSessions must be a non-negative integer or a percentage",
    ),
    (
        "bad buffer",
        {"bufferSessions": "lots"},
        "bufferSessions must be a non-negative integer or a percentage",
    ),
    (
        "limits != requests",
        {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}},
        "resources.limits must equal resources.requests (Guaranteed QoS)",
    ),
    (
        "cloud without key",
        {"providers": {"llm": {"provider": "groq"}}},
        "secretRef is required for a cloud provider",
    ),
    (
        "two redis",
        {"redis": {"url": "redis://r:6379", "secretRef": {"name": "r"}}},
        "exactly one of url or secretRef",
    ),
    ("no redis", {"redis": {}}, "exactly one of url or secretRef"),
    (
        "tls without rediss",
        {"redis": {"url": "redis://r:6379", "tls": True}},
        "redis.tls requires a rediss:// url",
    ),
    ("unknown provider", {"providers": {"stt": {"provider": "whisper"}}}, "whisper"),
    ("no image", {"image": ""}, "image"),
    ("bad affinity", {"service": {"sessionAffinity": "Cookie"}}, "Cookie"),
    ("interface list in one name", {"ice": {"interfaces": ["eth0,eth1"]}}, "ice.interfaces.0: 'eth0,eth1'"),
    ("empty interface", {"ice": {"excludeInterfaces": [""]}}, "ice.excludeInterfaces.0: ''"),
    ("interface too long", {"ice": {"interfaces": ["x" * 16]}}, "ice.interfaces.0"),
    ("address out of range", {"ice": {"addresses": ["10.0.0.300"]}}, "ice.addresses.0: '10.0.0.300'"),
    ("prefix too long", {"ice": {"excludeAddresses": ["10.0.0.0/33"]}}, "ice.excludeAddresses.0"),
    ("interface as address", {"ice": {"addresses": ["eth0"]}}, "ice.addresses.0: 'eth0'"),
    ("zone in address", {"ice": {"addresses": ["fe80::1%eth0"]}}, "ice.addresses.0"),
    ("network announced", {"ice": {"announce": {"address": "10.0.0.0/8"}}}, "ice.announce.address"),
    (
        "announce both",
        {"ice": {"announce": {"address": "203.0.113.7", "fromNode": True}}},
        "ice.announce needs exactly one of address or fromNode: true",
    ),
    (
        "announce nothing",
        {"ice": {"announce": {"fromNode": False}}},
        "ice.announce needs exactly one of address or fromNode: true",
    ),
    ("host network not a boolean", {"hostNetwork": "yes"}, "hostNetwork: 'yes'"),
    (
        "turn max = min",
        {"turn": {"minSilenceMs": 800, "maxSilenceMs": 800}},
        "turn.maxSilenceMs must be greater than turn.minSilenceMs",
    ),
    (
        "turn min over the default max",
        {"turn": {"minSilenceMs": 1000, "maxSilenceMs": 300}},
        "turn.maxSilenceMs must be greater than turn.minSilenceMs",
    ),
    ("turn min too short", {"turn": {"minSilenceMs": 50}}, "turn.minSilenceMs: 50"),
    ("turn max too long", {"turn": {"maxSilenceMs": 6000}}, "turn.maxSilenceMs: 6000"),
    ("fixed silence too short", {"turn": {"fixedSilenceMs": 0}}, "turn.fixedSilenceMs: 0"),
    ("interruption speech too long", {"turn": {"interruptionMinSpeechMs": 9000}}, "9000"),
    ("unknown detector", {"turn": {"detector": "smart"}}, "turn.detector: 'smart'"),
    ("unknown interruption policy", {"turn": {"interruption": "never"}}, "turn.interruption: 'never'"),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID_POOLS, ids=[c[0] for c in INVALID_POOLS])
def test_invalid_pools_are_rejected_with_a_clear_message(
    case: str, spec: dict[str, Any], message: str
) -> None:
    _, errors = crdschema.admit(samples.pool(**spec))
    assert errors, case
    assert any(message in e for e in errors), errors


def test_pool_name_must_fit_the_owned_objects() -> None:
    _, errors = crdschema.admit(samples.pool(name="x" * 41))
    assert any("DNS-1035 label of at most 40 characters" in e for e in errors)
    assert crdschema.admit(samples.pool(name="a" * 40))[1] == []


def test_sysctl_allowlist_is_the_same_in_crd_and_operator() -> None:
    rule = crdschema.schema("NodeTuningProfile")["properties"]["spec"]["properties"]["sysctls"]
    listed = {k for k in SYSCTL_ALLOWLIST if f"'{k}'" in rule["x-kubernetes-validations"][0]["rule"]}
    assert listed == SYSCTL_ALLOWLIST
    # The keys of the real-time voice profile (docs/operator.md, "NodeTuningProfile") are all allowed.
    for key in (
        "net.core.rmem_max",
        "net.ipv4.tcp_low_latency",
        "net.ipv4.tcp_congestion_control",
        "net.ipv4.udp_rmem_min",
    ):
        assert key in SYSCTL_ALLOWLIST


INVALID_PROFILES: list[tuple[str, dict[str, Any], str]] = [
    ("not allowlisted", {"sysctls": {"kernel.panic": "1"}}, "sysctl keys must be from the allowlist"),
    ("shell in value", {"sysctls": {"net.core.rmem_max": "1; reboot"}}, "does not match"),
    ("no sysctls", {"sysctls": {}}, "sysctls"),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID_PROFILES, ids=[c[0] for c in INVALID_PROFILES])
def test_invalid_profiles_are_rejected(case: str, spec: dict[str, Any], message: str) -> None:
    body = samples.profile(**spec)
    _, errors = crdschema.admit(body)
    assert any(message in e for e in errors), errors


def test_operator_rejects_what_the_schema_rejects() -> None:
    """The operator re-checks (objects from before a CRD upgrade): same verdict as the schema."""
    for case, spec, _ in INVALID_POOLS:
        if case in {"unknown provider", "bad affinity"}:
            continue  # enums: the operator passes the value through, the schema is the gate
        with pytest.raises(ValueError):
            parse_pool_spec(samples.pool(**spec)["spec"])
    for _, spec, _ in INVALID_PROFILES:
        with pytest.raises(ValueError):
            parse_profile_spec(samples.profile(**spec)["spec"])


def doc_examples() -> list[dict[str, Any]]:
    text = (ROOT / "docs" / "operator.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return [yaml.safe_load(block) for block in blocks]


def test_the_documented_examples_are_admitted_and_reconcilable() -> None:
    examples = doc_examples()
    assert sorted(e["kind"] for e in examples) == ["NodeTuningProfile", "VoiceAgentPool"]
    for example in examples:
        stored, errors = crdschema.admit(example)
        assert errors == [], example["kind"]
        parse = parse_pool_spec if example["kind"] == "VoiceAgentPool" else parse_profile_spec
        parse(stored["spec"])


def test_kustomize_renders_every_crd_in_the_directory() -> None:
    kubectl = pathlib.Path(sys.executable).parent / "kubectl"
    result = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "crds")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d)
    assert rendered == sorted(d["metadata"]["name"] for d in crds())
    assert len(rendered) == 4


# Formats and enums are the schema's alone (the operator passes them through); the properties here
# are the rules both enforce.
CPU = st.one_of(st.sampled_from(["1", "2", "500m", "1.5"]), st.integers(1, 8))
MEMORY = st.sampled_from(["2Gi", "512Mi", "1G", "4Gi"])
SPECS = st.fixed_dictionaries(
    {},
    optional={
        "replicas": st.fixed_dictionaries(
            {}, optional={"min": st.integers(-2, 12), "max": st.integers(-2, 12)}
        ),
        "autoscaling": st.fixed_dictionaries(
            {}, optional={"engine": st.sampled_from(["hpa", "keda", "knative"])}
        ),
        "sessionsPerAgent": st.integers(-2, 50),
        "bufferSessions": st.one_of(
            st.integers(-3, 20), st.sampled_from(["0%", "25%", "150%", "lots", "-5%", "5"])
        ),
        "resources": st.fixed_dictionaries(
            {"requests": st.fixed_dictionaries({"cpu": CPU, "memory": MEMORY})},
            optional={"limits": st.fixed_dictionaries({"cpu": CPU, "memory": MEMORY})},
        ),
        "providers": st.fixed_dictionaries(
            {},
            optional={
                "llm": st.fixed_dictionaries(
                    {"provider": st.sampled_from(["local", "groq", "openai"])},
                    optional={"secretRef": st.just({"name": "llm"})},
                )
            },
        ),
        "ice": st.fixed_dictionaries(
            {},
            optional={
                "interfaces": st.lists(st.sampled_from(["eth0", "net1", "lo", "eth0,eth1", "", "br 0"])),
                "excludeAddresses": st.lists(
                    st.sampled_from(
                        [
                            "10.0.0.0/8",
                            "192.0.2.1",
                            "::1",
                            "2001:db8::/32",
                            "10.0.0.300",
                            "1.2.3.4/33",
                            "eth0",
                        ]
                    )
                ),
                "announce": st.sampled_from(
                    [
                        {"address": "203.0.113.7"},
                        {"address": "2001:db8::7"},
                        {"fromNode": True},
                        {"fromNode": False},
                        {},
                        {"address": "203.0.113.7", "fromNode": True},
                        {"address": "203.0.113.7", "fromNode": False},
                        {"address": "nat"},
                    ]
                ),
            },
        ),
        "hostNetwork": st.booleans(),
        "turn": st.fixed_dictionaries(
            {},
            optional={
                "detector": st.sampled_from(["adaptive", "fixed", "smart"]),
                "minSilenceMs": st.integers(50, 1100),
                "maxSilenceMs": st.integers(200, 5100),
                "fixedSilenceMs": st.integers(50, 5100),
                "interruption": st.sampled_from(["classify", "immediate", "never"]),
                "interruptionMinSpeechMs": st.integers(50, 5100),
            },
        ),
        "redis": st.one_of(
            st.just({"url": "redis://r:6379"}),
            st.just({"url": "redis://r:6379", "tls": True}),
            st.just({"url": "rediss://r:6379", "tls": True}),
            st.just({"secretRef": {"name": "redis"}}),
            st.just({"url": "redis://r:6379", "secretRef": {"name": "redis"}}),
            st.just({}),
        ),
    },
)


@settings(max_examples=80, deadline=None)
@given(spec=SPECS)
def test_schema_and_operator_agree_on_what_is_valid(spec: dict[str, Any]) -> None:
    """Whatever the API server admits, the operator reconciles; whatever it refuses, so does the operator."""
    body = samples.pool()
    body["spec"].update(spec)
    stored, errors = crdschema.admit(body)
    try:
        parse_pool_spec(stored["spec"] if not errors else body["spec"])
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == (errors == []), errors
