"""The node tuner: the only privileged workload, isolated in its own namespace and ServiceAccount.

It writes the profile's allowlisted sysctls into the host's /proc/sys (hostNetwork, so the net.*
keys land in the node's network namespace), re-applies them periodically, and is Ready only
while every value reads back as set: the operator labels a node as tuned from that readiness.
"""

from voice_operator import constants as c
from voice_operator.objects import Obj, Owner, managed_labels, metadata, render_serviceaccount, with_hash
from voice_operator.profiles.spec import ProfileSpec

# Lines "key=value" in $VOICEPOOL_SYSCTLS; keys/values are allowlisted and pattern-checked upstream.
_FOR_EACH = (
    'printf "%s\\n" "$VOICEPOOL_SYSCTLS" | while IFS="=" read -r key value; do '
    '[ -n "$key" ] || continue; path="/proc/sys/$(echo "$key" | tr . /)"; '
)
VERIFY_SCRIPT = (
    "set -eu; "
    + _FOR_EACH
    + 'have="$(tr -s "[:space:]" " " < "$path" | sed "s/ $//")"; '
    + 'if [ "$have" != "$value" ]; then echo "$key=$have, want $value" >&2; exit 1; fi; done'
)
APPLY_SCRIPT = (
    "set -eu; while true; do "
    + _FOR_EACH
    + 'printf "%s" "$value" > "$path" || echo "cannot set $key" >&2; done; '
    + f"sh -c '{VERIFY_SCRIPT}' && echo \"sysctls verified\"; sleep 60; done"
)


def tuner_name(profile: str) -> str:
    return f"nodetuning-{profile}"


def tuner_labels(profile: str) -> dict[str, str]:
    return managed_labels("node-tuner", c.PROFILE_LABEL, profile)


def sysctl_lines(spec: ProfileSpec) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(spec.sysctls.items()))


def render_tuner_serviceaccount(owner: Owner, namespace: str) -> Obj:
    return render_serviceaccount(owner, tuner_name(owner.name), namespace, tuner_labels(owner.name))


def render_namespace(name: str) -> Obj:
    """The tuner's namespace: the only one allowed privileged pods by Pod Security admission."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                c.LABEL_PART_OF: "voicepool",
                c.LABEL_MANAGED_BY: c.MANAGER,
                "pod-security.kubernetes.io/enforce": "privileged",
            },
        },
    }


def render_daemonset(owner: Owner, spec: ProfileSpec, namespace: str, default_image: str) -> Obj:
    name = tuner_name(owner.name)
    labels = tuner_labels(owner.name)
    selector = {c.PROFILE_LABEL: owner.name, c.LABEL_NAME: "node-tuner"}
    tiny = {"cpu": "10m", "memory": "16Mi"}
    pod_spec: Obj = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "tuner",
                "image": spec.image or default_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", APPLY_SCRIPT],
                "env": [{"name": "VOICEPOOL_SYSCTLS", "value": sysctl_lines(spec)}],
                "resources": {"requests": dict(tiny), "limits": dict(tiny)},
                "securityContext": {
                    "privileged": True,
                    "runAsUser": 0,
                    "readOnlyRootFilesystem": True,
                },
                "readinessProbe": {
                    "exec": {"command": ["sh", "-c", VERIFY_SCRIPT]},
                    "periodSeconds": 10,
                    "failureThreshold": 1,
                },
            }
        ],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return with_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": metadata(name, namespace, labels, owner),
            "spec": {
                "selector": {"matchLabels": selector},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }
    )
