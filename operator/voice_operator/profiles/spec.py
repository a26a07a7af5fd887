"""The NodeTuningProfile spec, with the CRD defaults applied (see fields.py)."""

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from voice_operator.fields import Problems, mapping

SYSCTL_ALLOWLIST: frozenset[str] = frozenset(
    {
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.netdev_max_backlog",
        "net.core.default_qdisc",
        "net.ipv4.tcp_low_latency",
        "net.ipv4.tcp_congestion_control",
        "net.ipv4.udp_rmem_min",
        "net.ipv4.udp_wmem_min",
    }
)
_SYSCTL_VALUE = re.compile(r"^[a-z0-9]+( [a-z0-9]+)*$")


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    sysctls: Mapping[str, str]
    image: str | None


def parse_profile_spec(raw: Mapping[str, Any]) -> ProfileSpec:
    """The spec, or a SpecError naming every problem it has."""
    problems = Problems()
    return problems.check(lambda: _read_profile_spec(raw, problems))


def _read_profile_spec(raw: Mapping[str, Any], problems: Problems) -> ProfileSpec:
    sysctls = mapping(raw.get("sysctls"), "spec.sysctls")
    if not sysctls:
        problems.add("spec.sysctls must name at least one sysctl")
    bad = sorted(k for k in sysctls if k not in SYSCTL_ALLOWLIST)
    if bad:
        problems.add(f"sysctl keys not in the allowlist: {', '.join(bad)}")
    for key, value in sysctls.items():
        if not isinstance(value, str) or not _SYSCTL_VALUE.match(value):
            problems.add(f"sysctl {key} has an invalid value")
    return ProfileSpec(
        node_selector={
            str(k): str(v) for k, v in mapping(raw.get("nodeSelector"), "spec.nodeSelector").items()
        },
        tolerations=tuple(mapping(t, "spec.tolerations[]") for t in (raw.get("tolerations") or [])),
        sysctls=dict(sorted(sysctls.items())),
        image=raw.get("image") or None,
    )
