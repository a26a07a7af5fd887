"""Everything a VoiceAgentPool owns, in creation order (the SA before the pods that use it).

The agents' Deployment has its own module (deployment.py); the smaller objects are here:
- Service: ClientIP affinity keeps a browser's HTTP and WebSocket on one agent.
- PodDisruptionBudget: voluntary disruptions (node drains) take agents down one at a time.
- HorizontalPodAutoscaler on session demand: the External metric is served by the operator itself
  (external.metrics.k8s.io); with the per-agent target of scaling.py the HPA keeps exactly enough
  agents for the live sessions plus the warm buffer. Scale-up is immediate, scale-down slow (calls
  last minutes).
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


def render_pool(owner: Owner, spec: PoolSpec) -> list[Obj]:
    return [
        render_serviceaccount(owner),
        render_service(owner, spec),
        render_pdb(owner, spec),
        render_deployment(owner, spec),
        render_hpa(owner, spec),
    ]


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
            "behavior": {
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
            },
        },
    )
