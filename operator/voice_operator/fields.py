"""Reading the fields of a custom resource's spec, for both kinds' parsers.

The API server applies the CRD defaults, but the operator must not depend on it (older objects,
test servers without defaulting), so each parser applies the same defaults once.
"""

from collections.abc import Mapping
from typing import Any


class SpecError(ValueError):
    """A spec the operator cannot act on (normally rejected by the CRD schema already)."""


def mapping(raw: Any, field: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{field} must be an object")
    return raw
