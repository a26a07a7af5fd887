"""The pool's Service: ClientIP affinity keeps a browser's HTTP and WebSocket on one agent."""

from voice_operator.objects import Obj, Owner, metadata, pool_labels, pool_selector, with_hash
from voice_operator.spec import PoolSpec


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
