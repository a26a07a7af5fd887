"""Every object the operator renders (pure functions): hardening, QoS, probes, scaling, ownership."""

from typing import Any

import kubernetes_validate
import pytest

from tests.operator import samples
from voice_operator import constants as c
from voice_operator.objects import Owner, desired_hash
from voice_operator.pools.deployment import render_deployment
from voice_operator.pools.render import render_pool, replaced_autoscaler
from voice_operator.pools.spec import PoolSpec, parse_pool_spec
from voice_operator.profiles.render import (
    APPLY_SCRIPT,
    VERIFY_SCRIPT,
    render_daemonset,
    render_namespace,
    render_tuner_serviceaccount,
)
from voice_operator.profiles.spec import parse_profile_spec

# The oldest Kubernetes the manifests support (docs/deploy.md) and the newest the validator knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
POOL_OWNER = Owner(kind=c.POOL_KIND, name="cloud", uid="uid-pool", namespace="voice")
PROFILE_OWNER = Owner(kind=c.PROFILE_KIND, name="realtime", uid="uid-profile")


def cloud_spec(**changes: Any) -> PoolSpec:
    body = samples.cloud_pool()
    body["spec"].update(changes)
    return parse_pool_spec(body["spec"])


def host_spec(**changes: Any) -> PoolSpec:
    body = samples.host_network_pool()
    body["spec"].update(changes)
    return parse_pool_spec(body["spec"])


def rendered(spec: PoolSpec | None = None) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_pool(POOL_OWNER, spec or cloud_spec())}


def agent_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def all_objects() -> list[dict[str, Any]]:
    profile = parse_profile_spec(samples.profile()["spec"])
    return [
        *render_pool(POOL_OWNER, cloud_spec()),
        *render_pool(POOL_OWNER, parse_pool_spec(samples.pool()["spec"])),
        render_deployment(POOL_OWNER, host_spec()),
        render_daemonset(PROFILE_OWNER, profile, "voicepool-tuning", "busybox:1.36"),
        render_tuner_serviceaccount(PROFILE_OWNER, "voicepool-tuning"),
        render_namespace("voicepool-tuning"),
    ]


@pytest.mark.parametrize("obj", all_objects(), ids=lambda o: o["kind"])
def test_every_rendered_object_validates_against_kubernetes(obj: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_pool_renders_its_five_objects_in_creation_order_all_owned_by_the_pool() -> None:
    objects = render_pool(POOL_OWNER, cloud_spec())
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "Service",
        "PodDisruptionBudget",
        "Deployment",
        "HorizontalPodAutoscaler",
    ]
    for obj in objects:
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == ("cloud", "voice")
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "voicepool.dev/v1alpha1",
                "kind": "VoiceAgentPool",
                "name": "cloud",
                "uid": "uid-pool",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][c.POOL_LABEL] == "cloud"
        assert meta["labels"][c.LABEL_MANAGED_BY] == c.MANAGER
        assert meta["annotations"][c.HASH_ANNOTATION] == desired_hash(obj)


def test_rendering_is_deterministic_and_the_hash_tracks_changes() -> None:
    assert render_pool(POOL_OWNER, cloud_spec()) == render_pool(POOL_OWNER, cloud_spec())
    before = rendered()["Deployment"]["metadata"]["annotations"][c.HASH_ANNOTATION]
    after = rendered(cloud_spec(image="voicepool/agent:2.0"))["Deployment"]["metadata"]["annotations"]
    assert after[c.HASH_ANNOTATION] != before


def test_deployment_is_guaranteed_qos() -> None:
    container = agent_container(rendered()["Deployment"])
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    default = agent_container(rendered(parse_pool_spec(samples.pool()["spec"]))["Deployment"])
    assert default["resources"]["requests"] == default["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}


def test_deployment_runs_non_root_read_only_without_capabilities_or_api_token() -> None:
    deployment = rendered()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    sc = agent_container(deployment)["securityContext"]
    assert sc["runAsUser"] == 1000 and sc["runAsGroup"] == 1000 and sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable path is an emptyDir at /tmp; agents get no API token.
    assert agent_container(deployment)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "cloud"
    assert "hostNetwork" not in pod


def test_deployment_probes_and_drain() -> None:
    deployment = rendered()["Deployment"]
    container = agent_container(deployment)
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 600 + pre_stop  # drainTimeoutSeconds of the cloud pool, after the preStop pause
    assert env_of(container)["VOICE_DRAIN_TIMEOUT_S"]["value"] == "600"
    for drain in (0, 30, 86400):
        spec = cloud_spec(session={"drainTimeoutSeconds": drain})
        dep = rendered(spec)["Deployment"]
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain + pre_stop


def test_deployment_rolls_out_without_losing_capacity_and_leaves_replicas_to_the_hpa() -> None:
    spec = rendered()["Deployment"]["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert spec["replicas"] == 2  # initial size = replicas.min
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_secrets_reach_the_agent_only_as_secret_references() -> None:
    env = env_of(agent_container(rendered()["Deployment"]))
    assert env["DEEPGRAM_API_KEY"] == {
        "name": "DEEPGRAM_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "deepgram", "key": "api-key"}},
    }
    assert env["GROQ_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "groq", "key": "k"}
    assert env["ELEVENLABS_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "elevenlabs"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "url"}
    assert env["VOICE_TURN_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "turn", "key": "username"}
    assert env["VOICE_TURN_CREDENTIAL"]["valueFrom"]["secretKeyRef"] == {"name": "turn", "key": "credential"}
    for name in (
        "DEEPGRAM_API_KEY",
        "GROQ_API_KEY",
        "ELEVENLABS_API_KEY",
        "REDIS_URL",
        "VOICE_TURN_CREDENTIAL",
    ):
        assert "value" not in env[name]
    # The ICE list references the TURN credentials; the kubelet expands them, they are never inline.
    assert '"credential":"$(VOICE_TURN_CREDENTIAL)"' in env["VOICE_ICE_SERVERS"]["value"]
    names = list(env)
    assert names.index("VOICE_TURN_CREDENTIAL") < names.index("VOICE_ICE_SERVERS")
    assert names.index("POD_IP") < names.index("VOICE_ADVERTISE_URL")


def test_agent_settings_follow_the_design_names() -> None:
    env = env_of(agent_container(rendered()["Deployment"]))
    values = {k: v.get("value") for k, v in env.items()}
    assert (values["VOICE_STT"], values["VOICE_LLM"], values["VOICE_TTS"]) == (
        "deepgram",
        "groq",
        "elevenlabs",
    )
    assert values["VOICE_DEEPGRAM_MODEL"] == "nova-3"
    assert values["VOICE_GROQ_MODEL"] == "llama-3.1-8b-instant"
    assert values["ELEVENLABS_BASE_URL"] == "https://tts.example/v1"
    assert values["VOICE_POOL"] == "voice.cloud"
    assert env["VOICE_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert values["VOICE_ADVERTISE_URL"] == "http://$(POD_IP):8000"
    assert values["VOICE_MAX_SESSIONS"] == "5"
    assert values["VOICE_SESSION_TTL_S"] == "1800"
    assert (values["VOICE_HOST"], values["VOICE_PORT"]) == ("0.0.0.0", "8000")
    local = env_of(agent_container(rendered(parse_pool_spec(samples.pool()["spec"]))["Deployment"]))
    assert local["REDIS_URL"] == {"name": "REDIS_URL", "value": samples.REDIS_URL}
    assert not any(k.endswith("_API_KEY") for k in local)


ICE_HOST_ENV = (
    "VOICE_ICE_INTERFACES",
    "VOICE_ICE_EXCLUDE_INTERFACES",
    "VOICE_ICE_ADDRESSES",
    "VOICE_ICE_EXCLUDE_ADDRESSES",
    "VOICE_ICE_ANNOUNCED_ADDRESS",
)


def test_pools_without_host_candidate_settings_render_as_before() -> None:
    """No new variable and no host network: upgrading the operator rolls no existing pool."""
    for spec in (cloud_spec(), parse_pool_spec(samples.pool()["spec"])):
        deployment = rendered(spec)["Deployment"]
        assert not set(ICE_HOST_ENV) & set(env_of(agent_container(deployment)))
        pod = deployment["spec"]["template"]["spec"]
        assert not {"hostNetwork", "dnsPolicy"} & set(pod)
        assert "hostPort" not in agent_container(deployment)["ports"][0]


TURN_TAKING_ENV = (
    "VOICE_TURN_DETECTOR",
    "VOICE_TURN_MIN_SILENCE_MS",
    "VOICE_TURN_MAX_SILENCE_MS",
    "VOICE_END_OF_TURN_SILENCE_MS",
    "VOICE_INTERRUPTION",
    "VOICE_INTERRUPTION_MIN_SPEECH_MS",
)


def test_pools_that_leave_turn_taking_at_its_defaults_render_as_before() -> None:
    """The defaults are the agent's own: nothing to write, and an operator upgrade rolls no pool."""
    before = rendered(cloud_spec())["Deployment"]
    assert not set(TURN_TAKING_ENV) & set(env_of(agent_container(before)))
    # As the API server defaults it:
    assert rendered(cloud_spec(turn=samples.TURN_DEFAULTS))["Deployment"] == before


def test_turn_taking_settings_reach_the_agent_by_their_names() -> None:
    turn = {
        "detector": "fixed",
        "minSilenceMs": 300,
        "maxSilenceMs": 2000,
        "fixedSilenceMs": 800,
        "interruption": "immediate",
        "interruptionMinSpeechMs": 400,
    }
    env = env_of(agent_container(rendered(cloud_spec(turn=turn))["Deployment"]))
    assert {name: env[name]["value"] for name in TURN_TAKING_ENV} == {
        "VOICE_TURN_DETECTOR": "fixed",
        "VOICE_TURN_MIN_SILENCE_MS": "300",
        "VOICE_TURN_MAX_SILENCE_MS": "2000",
        "VOICE_END_OF_TURN_SILENCE_MS": "800",
        "VOICE_INTERRUPTION": "immediate",
        "VOICE_INTERRUPTION_MIN_SPEECH_MS": "400",
    }
    only_one = env_of(agent_container(rendered(cloud_spec(turn={"maxSilenceMs": 1200}))["Deployment"]))
    assert {name: only_one[name]["value"] for name in TURN_TAKING_ENV if name in only_one} == {
        "VOICE_TURN_MAX_SILENCE_MS": "1200"
    }
    # A changed setting is a new pod template: the agents roll out with it.
    hashes = [
        rendered(s)["Deployment"]["metadata"]["annotations"][c.HASH_ANNOTATION]
        for s in (cloud_spec(), cloud_spec(turn={"maxSilenceMs": 1200}))
    ]
    assert hashes[0] != hashes[1]


def test_host_candidate_settings_reach_the_agent_comma_separated() -> None:
    ice = {
        "interfaces": ["net1"],
        "excludeInterfaces": ["eth0", "docker0"],
        "addresses": ["192.0.2.0/24"],
        "excludeAddresses": ["192.0.2.1", "2001:db8::/32"],
        "announce": {"address": "203.0.113.7"},
    }
    env = env_of(agent_container(rendered(cloud_spec(ice=ice))["Deployment"]))
    assert {name: env[name] for name in ICE_HOST_ENV} == {
        "VOICE_ICE_INTERFACES": {"name": "VOICE_ICE_INTERFACES", "value": "net1"},
        "VOICE_ICE_EXCLUDE_INTERFACES": {"name": "VOICE_ICE_EXCLUDE_INTERFACES", "value": "eth0,docker0"},
        "VOICE_ICE_ADDRESSES": {"name": "VOICE_ICE_ADDRESSES", "value": "192.0.2.0/24"},
        "VOICE_ICE_EXCLUDE_ADDRESSES": {
            "name": "VOICE_ICE_EXCLUDE_ADDRESSES",
            "value": "192.0.2.1,2001:db8::/32",
        },
        "VOICE_ICE_ANNOUNCED_ADDRESS": {"name": "VOICE_ICE_ANNOUNCED_ADDRESS", "value": "203.0.113.7"},
    }
    only_some = env_of(
        agent_container(rendered(cloud_spec(ice={"excludeInterfaces": ["docker0"]}))["Deployment"])
    )
    assert [name for name in ICE_HOST_ENV if name in only_some] == ["VOICE_ICE_EXCLUDE_INTERFACES"]


def test_announcing_the_node_address_comes_from_the_downward_api() -> None:
    env = env_of(agent_container(rendered(cloud_spec(ice={"announce": {"fromNode": True}}))["Deployment"]))
    assert env["VOICE_ICE_ANNOUNCED_ADDRESS"] == {
        "name": "VOICE_ICE_ANNOUNCED_ADDRESS",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}},
    }


def test_host_network_pool_runs_one_hardened_agent_per_node_announcing_the_node() -> None:
    deployment = render_deployment(POOL_OWNER, host_spec())
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    # Required, not preferred: a second agent on a node would collide on the node's port.
    anti = pod["affinity"]["podAntiAffinity"]
    assert anti == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {c.LABEL_NAME: "voice-agent", c.POOL_LABEL: "cloud"}},
            }
        ]
    }
    container = agent_container(deployment)
    assert container["ports"] == [
        {"name": "http", "containerPort": 8000, "hostPort": 8000, "protocol": "TCP"}
    ]
    env = env_of(container)
    assert env["VOICE_ICE_ANNOUNCED_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["VOICE_ICE_INTERFACES"]["value"] == "eth0,bond0"
    assert env["VOICE_ICE_EXCLUDE_ADDRESSES"]["value"] == "192.0.2.1,10.244.0.0/16"
    # It listens on the node's primary address, not on every interface of the node.
    assert env["VOICE_HOST"]["value"] == "$(POD_IP)"
    names = list(env)
    assert names.index("POD_IP") < names.index("VOICE_HOST")
    # The host's network, nothing else of the host: the container stays as hardened as ever.
    default = render_deployment(POOL_OWNER, parse_pool_spec(samples.pool()["spec"]))
    assert container["securityContext"] == agent_container(default)["securityContext"]
    assert pod["securityContext"] == default["spec"]["template"]["spec"]["securityContext"]
    assert pod["automountServiceAccountToken"] is False and "hostPID" not in pod and "hostIPC" not in pod
    assert all("hostPath" not in v for v in pod["volumes"])
    # Every node may hold an agent already: a rollout may take one away before its successor starts.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 1}


def test_host_network_pool_announces_a_fixed_address_when_told() -> None:
    spec = host_spec(ice={"announce": {"address": "203.0.113.7"}})
    env = env_of(agent_container(render_deployment(POOL_OWNER, spec)))
    assert env["VOICE_ICE_ANNOUNCED_ADDRESS"] == {
        "name": "VOICE_ICE_ANNOUNCED_ADDRESS",
        "value": "203.0.113.7",
    }


def test_node_affinity_requires_nodes_the_profile_tuned() -> None:
    affinity = rendered()["Deployment"]["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "tuning.voicepool.dev/realtime", "operator": "In", "values": ["true"]}]}
    ]
    spread = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    untuned = rendered(parse_pool_spec(samples.pool()["spec"]))["Deployment"]
    assert "nodeAffinity" not in untuned["spec"]["template"]["spec"]["affinity"]


def test_tolerations_are_passed_to_the_pods() -> None:
    tol = {"key": "voice", "operator": "Exists", "effect": "NoSchedule"}
    dep = render_deployment(POOL_OWNER, cloud_spec(tolerations=[tol]))
    assert dep["spec"]["template"]["spec"]["tolerations"] == [tol]


def test_service_keeps_a_client_on_one_agent() -> None:
    svc = rendered()["Service"]["spec"]
    assert svc["sessionAffinity"] == "ClientIP"
    assert svc["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert svc["selector"] == {c.LABEL_NAME: "voice-agent", c.POOL_LABEL: "cloud"}
    assert svc["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    lb = rendered(cloud_spec(service={"type": "LoadBalancer", "annotations": {"a": "b"}}))["Service"]
    assert lb["spec"]["externalTrafficPolicy"] == "Local"
    assert lb["metadata"]["annotations"]["a"] == "b"
    none = rendered(cloud_spec(service={"sessionAffinity": "None"}))["Service"]["spec"]
    assert none["sessionAffinity"] == "None" and "sessionAffinityConfig" not in none


def test_pdb_allows_one_agent_down_at_a_time() -> None:
    pdb = rendered()["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == {c.LABEL_NAME: "voice-agent", c.POOL_LABEL: "cloud"}


def test_hpa_scales_the_deployment_on_the_external_session_demand_metric() -> None:
    hpa = rendered()["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cloud"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    assert spec["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {
                    "name": "voicepool_session_demand",
                    "selector": {"matchLabels": {c.POOL_LABEL: "cloud"}},
                },
                "target": {"type": "AverageValue", "averageValue": "5"},
            },
        }
    ]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def keda_spec(**changes: Any) -> PoolSpec:
    return cloud_spec(autoscaling={"engine": "keda"}, **changes)


def test_keda_pool_renders_a_scaledobject_in_place_of_the_hpa() -> None:
    objects = render_pool(POOL_OWNER, keda_spec(replicas={"min": 0, "max": 8}), "scaler.example:9000")
    assert [o["kind"] for o in objects][-1] == "ScaledObject"
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}
    scaled = objects[-1]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "uid-pool"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cloud"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)
    # The scaler answers for the pool the ScaledObject names: the trigger only says where it is.
    assert spec["triggers"] == [
        {
            "type": "external",
            "metricType": "AverageValue",
            "metadata": {"scalerAddress": "scaler.example:9000"},
        }
    ]
    # KEDA's HPA keeps the pace of the operator's own.
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        == rendered()["HorizontalPodAutoscaler"]["spec"]["behavior"]
    )
    assert render_pool(POOL_OWNER, keda_spec())[-1]["spec"]["triggers"][0]["metadata"] == {
        "scalerAddress": c.SCALER_ADDRESS
    }


def test_each_engine_replaces_the_others_object() -> None:
    assert replaced_autoscaler(keda_spec()) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert replaced_autoscaler(cloud_spec()) == ("keda.sh/v1alpha1", "ScaledObject")


def test_serviceaccount_has_no_token() -> None:
    assert rendered()["ServiceAccount"]["automountServiceAccountToken"] is False


def test_tuner_daemonset_is_isolated_privileged_and_verifies_its_sysctls() -> None:
    spec = parse_profile_spec(samples.profile()["spec"])
    ds = render_daemonset(PROFILE_OWNER, spec, "voicepool-tuning", "busybox:1.36")
    meta = ds["metadata"]
    assert (meta["name"], meta["namespace"]) == ("nodetuning-realtime", "voicepool-tuning")
    assert meta["ownerReferences"][0]["kind"] == "NodeTuningProfile"
    assert meta["ownerReferences"][0]["uid"] == "uid-profile"
    pod = ds["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nodetuning-realtime" and pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"voicepool.dev/role": "voice"}
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == "busybox:1.36"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VOICEPOOL_SYSCTLS"].splitlines() == [
        "net.core.rmem_max=4194304",
        "net.core.wmem_max=4194304",
        "net.ipv4.tcp_congestion_control=bbr",
        "net.ipv4.tcp_low_latency=1",
        "net.ipv4.udp_rmem_min=16384",
    ]
    assert container["command"] == ["sh", "-c", APPLY_SCRIPT]
    assert container["readinessProbe"]["exec"]["command"] == ["sh", "-c", VERIFY_SCRIPT]
    assert (
        ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    )
    sa = render_tuner_serviceaccount(PROFILE_OWNER, "voicepool-tuning")
    assert (sa["metadata"]["name"], sa["metadata"]["namespace"]) == (
        "nodetuning-realtime",
        "voicepool-tuning",
    )
    ns = render_namespace("voicepool-tuning")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_tuner_scripts_apply_and_verify_on_a_fake_proc(tmp_path: Any) -> None:
    """The shell the tuner runs, executed for real with /proc/sys redirected to a directory."""
    import subprocess

    proc_sys = tmp_path / "proc" / "sys"
    (proc_sys / "net" / "core").mkdir(parents=True)
    (proc_sys / "net" / "ipv4").mkdir(parents=True)
    (proc_sys / "net" / "core" / "rmem_max").write_text("212992\n")
    (proc_sys / "net" / "ipv4" / "tcp_congestion_control").write_text("cubic\n")
    lines = "net.core.rmem_max=4194304\nnet.ipv4.tcp_congestion_control=bbr"
    env = {"VOICEPOOL_SYSCTLS": lines, "PATH": "/usr/bin:/bin"}
    verify = VERIFY_SCRIPT.replace("/proc/sys", str(proc_sys))
    assert subprocess.run(["sh", "-c", verify], env=env, capture_output=True, timeout=10).returncode == 1
    once = APPLY_SCRIPT.replace("/proc/sys", str(proc_sys)).replace("sleep 60; done", "break; done")
    result = subprocess.run(["sh", "-c", once], env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "sysctls verified" in result.stdout
    assert (proc_sys / "net" / "core" / "rmem_max").read_text() == "4194304"
    assert subprocess.run(["sh", "-c", verify], env=env, capture_output=True, timeout=10).returncode == 0
