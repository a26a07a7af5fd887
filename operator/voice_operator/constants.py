"""Names shared by the operator's renderers, handlers and tests (the API contract of the CRDs)."""

from typing import Final

GROUP: Final = "voicepool.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
POOL_KIND: Final = "VoiceAgentPool"
POOL_PLURAL: Final = "voiceagentpools"
PROFILE_KIND: Final = "NodeTuningProfile"
PROFILE_PLURAL: Final = "nodetuningprofiles"

MANAGER: Final = "voicepool-operator"
AGENT_PORT: Final = 8000
AGENT_CONTAINER: Final = "agent"

# Labels on everything the operator owns; POOL_LABEL also selects a pool's pods.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
POOL_LABEL: Final = f"{GROUP}/pool"
PROFILE_LABEL: Final = f"{GROUP}/tuning-profile"

# Node label the operator sets once a profile's tuner has verified the node: tuning.voicepool.dev/<profile>.
TUNED_LABEL_PREFIX: Final = f"tuning.{GROUP}/"

# Hash of the desired object stored on it, so an unchanged object costs no write on restart.
HASH_ANNOTATION: Final = f"{GROUP}/desired-hash"
DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"

# External metric served to the HPA: per-pool session demand = ceil(active + buffer).
DEMAND_METRIC: Final = "voicepool_session_demand"
EXTERNAL_METRICS_GROUP: Final = "external.metrics.k8s.io"
EXTERNAL_METRICS_VERSION: Final = "v1beta1"

# Where KEDA reaches the operator's external scaler (gRPC), as the manifests install it; the
# operator's VOICE_OPERATOR_SCALER_ADDRESS overrides it.
SCALER_PORT: Final = 9000
SCALER_ADDRESS: Final = f"voicepool-operator.voicepool.svc:{SCALER_PORT}"

PRESTOP_SLEEP_S: Final = 5
GRACE_MARGIN_S: Final = 15


def tuned_label(profile: str) -> str:
    return f"{TUNED_LABEL_PREFIX}{profile}"


def pool_id(namespace: str, name: str) -> str:
    """The pool name agents register under in Redis (VOICE_POOL): unique across namespaces."""
    return f"{namespace}.{name}"
