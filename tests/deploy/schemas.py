"""Validation of objects against Kubernetes (kubernetes-validate) and against our CRDs (jsonschema + CEL).

The CRD check is what the API server does on create: the openAPIV3Schema, then every
x-kubernetes-validations rule evaluated with cel-python on the node it is attached to.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
from celpy.adapter import json_to_cel

from tests.deploy.manifests import Obj, crd_schemas

K8S_VERSION = "1.34.0"

# Other projects' CRDs whose kinds the operator renders: their schemas, kept in the repository.
FOREIGN_CRD_DIR = Path(__file__).parent / "foreign"

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


@functools.cache
def foreign_schemas() -> dict[tuple[str, str], Obj]:
    return crd_schemas(FOREIGN_CRD_DIR)


def unknown_fields(schema: Obj, value: Any, path: str = "") -> Iterator[str]:
    """Fields a structural schema does not know: the API server drops them silently (kubectl
    --validate=strict refuses them), so a misspelt field would otherwise go unnoticed."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key in schema["properties"]:
                yield from unknown_fields(schema["properties"][key], sub, f"{path}.{key}")
            elif key != "metadata" or path:
                yield f"{path}.{key}: unknown field"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from unknown_fields(schema["items"], sub, f"{path}[{i}]")


def schema_problems(schema: Obj, obj: Obj) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return problems or cel_violations(schema, obj)


def custom_resource_problems(obj: Obj) -> list[str]:
    """Problems of an object of one of our CRDs' kinds; empty when the API server would accept it."""
    return schema_problems(crd_schemas()[(obj["apiVersion"], obj["kind"])], obj)


def foreign_resource_problems(obj: Obj) -> list[str]:
    """Problems of an object of another project's CRD we keep the schema of (tests/deploy/foreign)."""
    schema = foreign_schemas()[(obj["apiVersion"], obj["kind"])]
    return schema_problems(schema, obj) or list(unknown_fields(schema, obj))


def problems(obj: Obj) -> list[str]:
    """Why `obj` would be rejected by a recent Kubernetes (with our CRDs installed); empty if valid."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in crd_schemas():
        return custom_resource_problems(obj)
    if key in foreign_schemas():
        return foreign_resource_problems(obj)
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
