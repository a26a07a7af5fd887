"""The agents' Deployment: hardened, Guaranteed QoS, draining, scheduled onto tuned nodes."""

import json
from typing import Any

from voice_operator import constants as c
from voice_operator.objects import Obj, Owner, metadata, pool_labels, pool_selector, with_hash
from voice_operator.pools.spec import PROVIDER_ENV, PoolSpec, TurnTaking

RUN_AS: int = 1000
# spec.turn's settings in the agent (docs/configuration.md), by TurnTaking field.
TURN_TAKING_ENV: tuple[tuple[str, str], ...] = (
    ("VOICE_TURN_DETECTOR", "detector"),
    ("VOICE_TURN_MIN_SILENCE_MS", "min_silence_ms"),
    ("VOICE_TURN_MAX_SILENCE_MS", "max_silence_ms"),
    ("VOICE_END_OF_TURN_SILENCE_MS", "fixed_silence_ms"),
    ("VOICE_INTERRUPTION", "interruption"),
    ("VOICE_INTERRUPTION_MIN_SPEECH_MS", "interruption_min_speech_ms"),
)


def _secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def ice_servers_json(spec: PoolSpec) -> str:
    """VOICE_ICE_SERVERS; TURN credentials are $(VAR) references the kubelet expands from Secrets."""
    servers: list[dict[str, Any]] = [{"urls": list(urls)} for urls in spec.ice_servers]
    if spec.turn is not None:
        servers.append(
            {
                "urls": list(spec.turn.urls),
                "username": "$(VOICE_TURN_USERNAME)",
                "credential": "$(VOICE_TURN_CREDENTIAL)",
            }
        )
    return json.dumps(servers, separators=(",", ":"))


def host_candidate_env(spec: PoolSpec) -> list[Obj]:
    """The agent's host-candidate settings; only those set, so other pools' templates stay as they were."""
    hc = spec.host_candidates
    lists = (
        ("VOICE_ICE_INTERFACES", hc.interfaces),
        ("VOICE_ICE_EXCLUDE_INTERFACES", hc.exclude_interfaces),
        ("VOICE_ICE_ADDRESSES", hc.addresses),
        ("VOICE_ICE_EXCLUDE_ADDRESSES", hc.exclude_addresses),
    )
    env: list[Obj] = [{"name": name, "value": ",".join(values)} for name, values in lists if values]
    if hc.announce_address is not None:
        env.append({"name": "VOICE_ICE_ANNOUNCED_ADDRESS", "value": hc.announce_address})
    elif hc.announce_from_node:
        env.append(_field_env("VOICE_ICE_ANNOUNCED_ADDRESS", "status.hostIP"))
    return env


def turn_taking_env(spec: PoolSpec) -> list[Obj]:
    """spec.turn as the agent's settings (docs/configuration.md); only those away from the defaults,
    which the agent shares, so the templates of pools that leave spec.turn alone stay as they were
    (no rollout of every pool when the operator is upgraded)."""
    t, default = spec.turn_taking, TurnTaking()
    return [
        {"name": name, "value": str(getattr(t, field))}
        for name, field in TURN_TAKING_ENV
        if getattr(t, field) != getattr(default, field)
    ]


def agent_env(namespace: str, pool: str, spec: PoolSpec) -> list[Obj]:
    """The agent's settings; secrets only as secretKeyRef, never as literal values."""
    env: list[Obj] = []
    for p in spec.providers:
        env.append({"name": f"VOICE_{p.role.upper()}", "value": p.provider})
        if p.provider in PROVIDER_ENV:
            if p.model:  # the agent's per-provider setting, e.g. VOICE_DEEPGRAM_MODEL
                env.append({"name": f"VOICE_{p.provider.upper()}_MODEL", "value": p.model})
            key_env, url_env = PROVIDER_ENV[p.provider]
            if p.secret is not None:
                env.append(_secret_env(key_env, p.secret.name, p.secret.key))
            if p.base_url:
                env.append({"name": url_env, "value": p.base_url})
    if spec.redis_secret is not None:
        env.append(_secret_env("REDIS_URL", spec.redis_secret.name, spec.redis_secret.key))
    else:
        env.append({"name": "REDIS_URL", "value": spec.redis_url})
    if spec.turn is not None:
        env.append(_secret_env("VOICE_TURN_USERNAME", spec.turn.secret_name, spec.turn.username_key))
        env.append(_secret_env("VOICE_TURN_CREDENTIAL", spec.turn.secret_name, spec.turn.credential_key))
    env += [
        {"name": "VOICE_POOL", "value": c.pool_id(namespace, pool)},
        _field_env("VOICE_AGENT_ID", "metadata.name"),
        _field_env("POD_IP", "status.podIP"),
        {"name": "VOICE_ADVERTISE_URL", "value": f"http://$(POD_IP):{c.AGENT_PORT}"},
        # On the host network, listen on the node's primary address only, not on all its interfaces.
        {"name": "VOICE_HOST", "value": "$(POD_IP)" if spec.host_network else "0.0.0.0"},
        {"name": "VOICE_PORT", "value": str(c.AGENT_PORT)},
        {"name": "VOICE_MAX_SESSIONS", "value": str(spec.sessions_per_agent)},
        {"name": "VOICE_SESSION_TTL_S", "value": str(spec.session_ttl_s)},
        {"name": "VOICE_DRAIN_TIMEOUT_S", "value": str(spec.drain_timeout_s)},
        {"name": "VOICE_ICE_SERVERS", "value": ice_servers_json(spec)},
        *host_candidate_env(spec),
        *turn_taking_env(spec),
    ]
    return env


def security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def affinity(pool: str, spec: PoolSpec) -> Obj:
    """Spread agents over nodes (strictly on the host network: two agents of a node would share its
    port); with a tuning profile, require nodes that profile verified."""
    one_per_node: Obj = {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": pool_selector(pool)},
    }
    anti: Obj = (
        {"requiredDuringSchedulingIgnoredDuringExecution": [one_per_node]}
        if spec.host_network
        else {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": one_per_node}
            ]
        }
    )
    result: Obj = {"podAntiAffinity": anti}
    if spec.tuning_profile:
        result["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": c.tuned_label(spec.tuning_profile), "operator": "In", "values": ["true"]}
                        ]
                    }
                ]
            }
        }
    return result


def grace_period(spec: PoolSpec) -> int:
    """Long enough for the preStop pause plus the agent's drain of live calls."""
    return c.PRESTOP_SLEEP_S + spec.drain_timeout_s + c.GRACE_MARGIN_S


def container(namespace: str, pool: str, spec: PoolSpec) -> Obj:
    quantities = {"cpu": spec.cpu, "memory": spec.memory}
    port: Obj = {"name": "http", "containerPort": c.AGENT_PORT, "protocol": "TCP"}
    if spec.host_network:
        port["hostPort"] = c.AGENT_PORT  # what the API server would default it to: said, not implied
    return {
        "name": c.AGENT_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "ports": [port],
        "env": agent_env(namespace, pool, spec),
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 1,
        },
        # Let endpoints drop the pod before SIGTERM starts the agent's drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": c.PRESTOP_SLEEP_S}}},
    }


def rolling_update(spec: PoolSpec) -> Obj:
    """Never dip below the serving capacity while rolling out: surge first, then drain. On the host
    network a new agent needs a node without one, and every node may have one: one may go first."""
    return {"maxSurge": 1, "maxUnavailable": 1 if spec.host_network else 0}


def render_deployment(owner: Owner, spec: PoolSpec) -> Obj:
    assert owner.namespace is not None
    pool = owner.name
    labels = pool_labels(pool)
    labels[c.LABEL_COMPONENT] = "agent"
    pod_spec: Obj = {
        "serviceAccountName": pool,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace_period(spec),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(owner.namespace, pool, spec)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}],
        "affinity": affinity(pool, spec),
    }
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"  # still resolve the cluster's Services
    obj: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pool, owner.namespace, labels, owner),
        "spec": {
            # Only the initial size: afterwards the HPA owns .spec.replicas (see ensure.PRESERVED).
            "replicas": spec.min_replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": pool_selector(pool)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(spec)},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return with_hash(obj)
