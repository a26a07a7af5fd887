"""Spec parsing, defaults and the scaling arithmetic (pure functions)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.operator import samples
from voice_operator.fields import SpecError
from voice_operator.pools.scaling import buffer_for, desired_replicas, session_demand
from voice_operator.pools.spec import HostCandidates, SecretKeyRef, TurnTaking, parse_pool_spec
from voice_operator.profiles.spec import parse_profile_spec


def test_minimal_pool_gets_the_documented_defaults() -> None:
    spec = parse_pool_spec(samples.pool()["spec"])
    assert (spec.min_replicas, spec.max_replicas, spec.sessions_per_agent, spec.buffer_sessions) == (
        1,
        10,
        2,
        0,
    )
    assert (spec.cpu, spec.memory) == ("1", "2Gi")
    assert [(p.role, p.provider, p.secret) for p in spec.providers] == [
        ("stt", "local", None),
        ("llm", "local", None),
        ("tts", "local", None),
    ]
    assert spec.redis_url == samples.REDIS_URL and spec.redis_secret is None
    assert (spec.session_ttl_s, spec.drain_timeout_s) == (3600, 300)
    assert (spec.service_type, spec.service_port, spec.session_affinity, spec.affinity_timeout_s) == (
        "ClusterIP",
        80,
        "ClientIP",
        10800,
    )
    assert spec.tuning_profile is None and spec.turn is None
    assert spec.turn_taking == TurnTaking("adaptive", 200, 1600, 500, "classify", 700)
    assert spec.secret_names() == []
    assert spec.host_candidates == HostCandidates() and spec.host_network is False
    assert spec.engine == "hpa"


def test_only_keda_scales_a_pool_to_zero() -> None:
    spec = parse_pool_spec(
        samples.pool(autoscaling={"engine": "keda"}, replicas={"min": 0, "max": 3})["spec"]
    )
    assert (spec.engine, spec.min_replicas, spec.max_replicas) == ("keda", 0, 3)
    assert parse_pool_spec(samples.pool(autoscaling={"engine": "keda"})["spec"]).min_replicas == 1
    with pytest.raises(SpecError, match=r"replicas.min must be >= 1 .*0 only with autoscaling.engine keda"):
        parse_pool_spec(samples.pool(replicas={"min": 0, "max": 3})["spec"])
    with pytest.raises(SpecError, match=r"replicas\.max must be >= 1"):
        parse_pool_spec(samples.pool(autoscaling={"engine": "keda"}, replicas={"min": 0, "max": 0})["spec"])
    with pytest.raises(SpecError, match=r"spec\.autoscaling\.engine must be one of hpa, keda, got 'knative'"):
        parse_pool_spec(samples.pool(autoscaling={"engine": "knative"})["spec"])
    with pytest.raises(SpecError, match=r"spec\.autoscaling"):
        parse_pool_spec(samples.pool(autoscaling="keda")["spec"])


def test_cloud_pool_collects_every_secret_reference() -> None:
    spec = parse_pool_spec(samples.cloud_pool()["spec"])
    assert spec.secret_names() == ["deepgram", "elevenlabs", "groq", "redis", "turn"]
    llm = spec.providers[1]
    assert (llm.provider, llm.model, llm.secret) == (
        "groq",
        "llama-3.1-8b-instant",
        SecretKeyRef("groq", "k"),
    )
    assert spec.providers[0].secret == SecretKeyRef("deepgram", "api-key")  # default key
    assert spec.redis_secret == SecretKeyRef("redis", "url") and spec.redis_tls
    assert spec.turn is not None and (spec.turn.username_key, spec.turn.credential_key) == (
        "username",
        "credential",
    )
    assert spec.tuning_profile == "realtime"


def test_local_provider_ignores_a_stray_secret_reference() -> None:
    spec = parse_pool_spec(
        samples.pool(providers={"stt": {"provider": "local", "secretRef": {"name": "x"}}})["spec"]
    )
    assert spec.providers[0].secret is None and spec.secret_names() == []


def test_host_candidate_settings_are_read_as_written() -> None:
    spec = parse_pool_spec(samples.host_network_pool()["spec"])
    assert spec.host_network is True
    assert spec.host_candidates == HostCandidates(
        interfaces=("eth0", "bond0"),
        exclude_interfaces=("docker0",),
        addresses=("192.0.2.0/24", "2001:db8::/32"),
        exclude_addresses=("192.0.2.1", "10.244.0.0/16"),
        announce_address=None,
        announce_from_node=True,  # the host network's default
    )


@pytest.mark.parametrize(
    ("host_network", "announce", "address", "from_node"),
    [
        (False, None, None, False),
        (True, None, None, True),
        (False, {"fromNode": True}, None, True),
        (False, {"address": "203.0.113.7"}, "203.0.113.7", False),
        (True, {"address": "2001:db8::7"}, "2001:db8::7", False),
        (True, {"address": "203.0.113.7", "fromNode": False}, "203.0.113.7", False),
    ],
)
def test_announced_address_is_fixed_from_the_node_or_the_host_networks_default(
    host_network: bool, announce: dict[str, object] | None, address: str | None, from_node: bool
) -> None:
    ice = {} if announce is None else {"announce": announce}
    spec = parse_pool_spec(samples.pool(hostNetwork=host_network, ice=ice)["spec"])
    assert (spec.host_candidates.announce_address, spec.host_candidates.announce_from_node) == (
        address,
        from_node,
    )


BAD_HOST_CANDIDATES: list[tuple[dict[str, object], str]] = [
    ({"interfaces": ["eth0,eth1"]}, r"spec\.ice\.interfaces\[0\] must be an interface name"),
    ({"interfaces": ["eth0", ""]}, r"spec\.ice\.interfaces\[1\] must be an interface name"),
    ({"excludeInterfaces": ["a-very-long-ifname"]}, r"spec\.ice\.excludeInterfaces\[0\]"),
    ({"excludeInterfaces": ["br 0"]}, r"spec\.ice\.excludeInterfaces\[0\]"),
    ({"interfaces": "eth0"}, r"spec\.ice\.interfaces must be a list"),
    (
        {"addresses": ["10.0.0.300"]},
        r"spec\.ice\.addresses\[0\] must be an IP address or CIDR, got '10\.0\.0\.300'",
    ),
    ({"addresses": ["10.0.0.0/33"]}, r"spec\.ice\.addresses\[0\]"),
    ({"addresses": [":::"]}, r"spec\.ice\.addresses\[0\]"),
    ({"addresses": ["eth0"]}, r"spec\.ice\.addresses\[0\]"),
    ({"excludeAddresses": ["10.0.0.0/8", "fe80::1%eth0"]}, r"spec\.ice\.excludeAddresses\[1\]"),
    ({"excludeAddresses": [10]}, r"spec\.ice\.excludeAddresses\[0\]"),
    ({"announce": {"address": "10.0.0.0/8"}}, r"spec\.ice\.announce\.address must be an IP address"),
    ({"announce": {"address": "node"}}, r"spec\.ice\.announce\.address must be an IP address"),
    ({"announce": {"address": "203.0.113.7", "fromNode": True}}, r"spec\.ice\.announce needs exactly one"),
    ({"announce": {"fromNode": False}}, r"spec\.ice\.announce needs exactly one"),
    ({"announce": {}}, r"spec\.ice\.announce needs exactly one"),
    ({"announce": {"fromNode": "yes"}}, r"spec\.ice\.announce\.fromNode must be a boolean"),
]


@pytest.mark.parametrize(("ice", "message"), BAD_HOST_CANDIDATES)
def test_bad_host_candidate_settings_name_the_field(ice: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_pool_spec(samples.pool(ice=ice)["spec"])


def test_turn_taking_is_read_as_written_and_defaulted_field_by_field() -> None:
    turn = {"detector": "fixed", "fixedSilenceMs": 800, "interruption": "immediate"}
    spec = parse_pool_spec(samples.pool(turn=turn)["spec"])
    assert spec.turn_taking == TurnTaking(
        detector="fixed",
        min_silence_ms=200,
        max_silence_ms=1600,
        fixed_silence_ms=800,
        interruption="immediate",
        interruption_min_speech_ms=700,
    )
    edges = {"minSilenceMs": 1000, "maxSilenceMs": 1001, "interruptionMinSpeechMs": 100}
    spec = parse_pool_spec(samples.pool(turn=edges)["spec"])
    assert (spec.turn_taking.min_silence_ms, spec.turn_taking.max_silence_ms) == (1000, 1001)
    assert spec.turn_taking.interruption_min_speech_ms == 100


BAD_TURN_TAKING: list[tuple[dict[str, object], str]] = [
    (
        {"minSilenceMs": 900, "maxSilenceMs": 900},
        r"turn\.maxSilenceMs must be greater than turn\.minSilenceMs",
    ),
    (
        {"maxSilenceMs": 300, "minSilenceMs": 400},
        r"turn\.maxSilenceMs must be greater than turn\.minSilenceMs",
    ),
    ({"minSilenceMs": 99}, r"spec\.turn\.minSilenceMs must be between 100 and 1000, got 99"),
    ({"minSilenceMs": 1001, "maxSilenceMs": 2000}, r"spec\.turn\.minSilenceMs must be between 100 and 1000"),
    ({"maxSilenceMs": 5001}, r"spec\.turn\.maxSilenceMs must be between 300 and 5000"),
    ({"fixedSilenceMs": 50}, r"spec\.turn\.fixedSilenceMs must be between 100 and 5000"),
    ({"interruptionMinSpeechMs": 0}, r"spec\.turn\.interruptionMinSpeechMs must be between 100 and 5000"),
    ({"minSilenceMs": "200"}, r"spec\.turn\.minSilenceMs must be an integer"),
    ({"maxSilenceMs": True}, r"spec\.turn\.maxSilenceMs must be an integer"),
    ({"detector": "smart"}, r"spec\.turn\.detector must be one of adaptive, fixed, got 'smart'"),
    ({"interruption": "never"}, r"spec\.turn\.interruption must be one of classify, immediate"),
]


@pytest.mark.parametrize(("turn", "message"), BAD_TURN_TAKING)
def test_bad_turn_taking_settings_name_the_field(turn: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_pool_spec(samples.pool(turn=turn)["spec"])


def test_turn_taking_must_be_an_object() -> None:
    with pytest.raises(SpecError, match=r"spec\.turn must be an object"):
        parse_pool_spec(samples.pool(turn="fast")["spec"])


def test_host_network_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"spec\.hostNetwork must be a boolean"):
        parse_pool_spec(samples.pool(hostNetwork="true")["spec"])


@pytest.mark.parametrize(
    ("active", "buffer", "demand"),
    [
        (0, 0, 0),
        (0, 3, 3),
        (7, 3, 10),
        (7, "25%", 9),
        (8, "25%", 10),
        (1, "10%", 2),
        (0, "50%", 0),
        (10, "0%", 10),
    ],
)
def test_demand_is_ceil_of_active_plus_buffer(active: int, buffer: int | str, demand: int) -> None:
    assert session_demand(active, buffer) == demand


def test_bad_percentage_buffer_is_an_error() -> None:
    with pytest.raises(SpecError):
        buffer_for("a lot", 3)


@given(
    active=st.integers(0, 5000),
    buffer=st.one_of(st.integers(0, 500), st.integers(0, 300).map(lambda p: f"{p}%")),
    spa=st.integers(1, 50),
    lo=st.integers(1, 20),
    span=st.integers(0, 50),
)
def test_desired_replicas_hold_the_demand_within_bounds(
    active: int, buffer: int | str, spa: int, lo: int, span: int
) -> None:
    spec = parse_pool_spec(
        samples.pool(replicas={"min": lo, "max": lo + span}, sessionsPerAgent=spa, bufferSessions=buffer)[
            "spec"
        ]
    )
    demand = session_demand(active, buffer)
    assert demand >= active
    replicas = desired_replicas(demand, spec)
    assert lo <= replicas <= lo + span
    if replicas < lo + span:  # not capped: enough room for every session plus the buffer...
        assert replicas * spa >= demand
    if replicas > lo:  # ...and not one agent more than needed
        assert (replicas - 1) * spa < demand


def test_profile_spec_sorts_and_checks_sysctls() -> None:
    spec = parse_profile_spec(samples.profile()["spec"])
    assert list(spec.sysctls) == sorted(spec.sysctls)
    assert spec.node_selector == {"voicepool.dev/role": "voice"}
    with pytest.raises(SpecError, match=r"allowlist: kernel\.panic"):
        parse_profile_spec({"sysctls": {"kernel.panic": "1"}})
    with pytest.raises(SpecError, match="invalid value"):
        parse_profile_spec({"sysctls": {"net.core.rmem_max": "$(reboot)"}})
