"""Everything a VoiceAgentPool owns, in creation order (the SA before the pods that use it).

The agents' Deployment has its own module (deployment.py); the smaller objects are here:
- Service: ClientIP affinity keeps a browser's HTTP and WebSocket on one agent.
- PodDisruptionBudget: voluntary disruptions (node drains) take agents down one at a time.
- the autoscaler, by spec.autoscaling.engine (docs/operator.md, "Autoscaling engines"):
  hpa: a HorizontalPodAutoscaler on session demand, an External metric served by the operator itself
  (external.metrics.k8s.io); keda: a KEDA ScaledObject whose `external` trigger is the operator's
  external scaler (pools/scaler.py), which serves the same demand. With the per-agent target of
  scaling.py either keeps exactly enough agents for the live sessions plus the warm buffer.
  Scale-up is immediate, scale-down slow (calls last minutes). The other engine's object is deleted
  by the reconcile (`replaced_autoscaler`).
"""

from voice_operator import constants as c
from voice_operator.objects import (
    Obj,
    Owner,
    metadata,
    pool_labels,
    pool_object,
    pool_selector,
    render_serviceaccount,
    with_hash,
)
from voice_operator.pools.deployment import render_deployment
from voice_operator.pools.scaling import per_agent_target
from voice_operator.pools.spec import PoolSpec

# KEDA's API for the ScaledObject (keda.sh/v1alpha1), as its CRD publishes it.
KEDA_API_VERSION = "keda.sh/v1alpha1"
# (apiVersion, kind) of each engine's object.
AUTOSCALERS = {
    "hpa": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "keda": (KEDA_API_VERSION, "ScaledObject"),
}
# How often KEDA asks IsActive while the pool is at zero (the first part of a cold start), and how
# long the pool stays up idle before KEDA takes it to zero.
KEDA_POLLING_INTERVAL_S = 5
KEDA_COOLDOWN_S = 300


def render_pool(owner: Owner, spec: PoolSpec, scaler_address: str = c.SCALER_ADDRESS) -> list[Obj]:
    """`scaler_address`: host:port where KEDA reaches the operator's external scaler."""
    autoscaler = (
        render_scaledobject(owner, spec, scaler_address) if spec.engine == "keda" else render_hpa(owner, spec)
    )
    return [
        render_serviceaccount(owner),
        render_service(owner, spec),
        render_pdb(owner, spec),
        render_deployment(owner, spec),
        autoscaler,
    ]


def replaced_autoscaler(spec: PoolSpec) -> tuple[str, str]:
    """(apiVersion, kind) of the engine the pool does not use: its object, if ours, goes."""
    (other,) = (kinds for engine, kinds in AUTOSCALERS.items() if engine != spec.engine)
    return other


def render_service(owner: Owner, spec: PoolSpec) -> Obj:
    svc_spec: Obj = {
        "type": spec.service_type,
        "selector": pool_selector(owner.name),
        "ports": [{"name": "http", "port": spec.service_port, "targetPort": "http", "protocol": "TCP"}],
        "sessionAffinity": spec.session_affinity,
    }
    if spec.session_affinity == "ClientIP":
        svc_spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": spec.affinity_timeout_s}}
    if spec.service_type == "LoadBalancer":
        # Keep the client IP visible so ClientIP affinity sees real clients, not nodes.
        svc_spec["externalTrafficPolicy"] = "Local"
    meta = metadata(owner.name, owner.namespace, pool_labels(owner.name), owner, spec.service_annotations)
    return with_hash({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": svc_spec})


def render_pdb(owner: Owner, spec: PoolSpec) -> Obj:
    return pool_object(
        "policy/v1",
        "PodDisruptionBudget",
        owner,
        {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pool_selector(owner.name)},
            # A pod that never became ready serves no calls: do not let it block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )


def render_hpa(owner: Owner, spec: PoolSpec) -> Obj:
    return pool_object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        owner,
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": c.DEMAND_METRIC,
                            "selector": {"matchLabels": {c.POOL_LABEL: owner.name}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(per_agent_target(spec))},
                    },
                }
            ],
            "behavior": scaling_behavior(),
        },
    )


def scaling_behavior() -> Obj:
    """The HPA's pace, whichever engine drives it (KEDA runs an HPA of its own)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def render_scaledobject(owner: Owner, spec: PoolSpec, scaler_address: str) -> Obj:
    """KEDA scales the Deployment: from zero when the scaler says the pool is active (IsActive),
    above that through its own HPA on the scaler's demand metric, with the HPA's AverageValue
    target of sessionsPerAgent (GetMetricSpec). The ScaledObject names the pool (name and
    namespace), so the trigger needs no metadata of its own beyond where the scaler is."""
    return pool_object(
        KEDA_API_VERSION,
        "ScaledObject",
        owner,
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "pollingInterval": KEDA_POLLING_INTERVAL_S,
            "cooldownPeriod": KEDA_COOLDOWN_S,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": scaling_behavior()}},
            "triggers": [
                {
                    "type": "external",
                    "metricType": "AverageValue",
                    "metadata": {"scalerAddress": scaler_address},
                }
            ],
        },
    )
