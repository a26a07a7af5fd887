"""Validation of objects against Kubernetes (kubernetes-validate) and against our CRDs (jsonschema + CEL).

The CRD check is what the API server does on create: the openAPIV3Schema, then every
x-kubernetes-validations rule evaluated with cel-python on the node it is attached to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
from celpy.adapter import json_to_cel

from tests.deploy.manifests import Obj, crd_schemas

K8S_VERSION = "1.34.0"

# Kinds of other projects' CRDs with no schema available offline: checked for shape only.
FOREIGN_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def _rules(schema: Obj, value: Any, path: str) -> Iterator[tuple[str, str, str, Any]]:
    """(path, rule, message, value) for every CEL rule that applies to `value` under `schema`."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule.get("message", rule["rule"]), value
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                yield from _rules(props[key], sub, f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from _rules(extra, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from _rules(schema["items"], sub, f"{path}[{i}]")


def cel_violations(schema: Obj, obj: Obj) -> list[str]:
    env = celpy.Environment()
    problems = []
    for path, rule, message, value in _rules(schema, obj, "self"):
        result = env.program(env.compile(rule)).evaluate({"self": json_to_cel(value)})
        if not bool(result):
            problems.append(f"{path}: {message}")
    return problems


def custom_resource_problems(obj: Obj) -> list[str]:
    """Problems of an object of one of our CRDs' kinds; empty when the API server would accept it."""
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return problems or cel_violations(schema, obj)


def problems(obj: Obj) -> list[str]:
    """Why `obj` would be rejected by a recent Kubernetes (with our CRDs installed); empty if valid."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in crd_schemas():
        return custom_resource_problems(obj)
    if key in FOREIGN_KINDS:
        meta = obj.get("metadata", {})
        return [] if meta.get("name") and meta.get("namespace") and "spec" in obj else ["incomplete object"]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key} in Kubernetes {K8S_VERSION}"]
    return []
