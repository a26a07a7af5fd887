"""What the API server does with a CRD's schema, for tests: defaulting, OpenAPI checks, CEL rules.

The OpenAPI part is checked with jsonschema (the x-kubernetes-* extensions are not JSON Schema
keywords and are ignored by it); every x-kubernetes-validations rule is evaluated with cel-python
against the defaulted object, with `self` bound to the value at the rule's node, as the API server
does.
"""

import copy
import functools
from typing import Any

import celpy
import jsonschema
from celpy import celtypes
from celpy.adapter import json_to_cel

from tests.operator.cluster import crds

Schema = dict[str, Any]


def crd(kind: str) -> dict[str, Any]:
    for doc in crds():
        if doc["spec"]["names"]["kind"] == kind:
            return doc
    raise KeyError(kind)


def version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def schema(kind: str) -> Schema:
    result: Schema = version(kind)["schema"]["openAPIV3Schema"]
    return result


def apply_defaults(node: Schema, value: Any) -> Any:
    """Structural defaulting: absent properties with a default get it, recursively."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for key, sub in (node.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            known = set(node.get("properties") or {})
            for key in [k for k in value if k not in known]:
                value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [apply_defaults(node["items"], v) for v in value]
    return value


@functools.cache
def _program(rule: str) -> celpy.Runner:
    """Compiled once per rule: cel-python's parser is slow."""
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_errors(node: Schema, value: Any, path: str) -> list[str]:
    errors = []
    for rule in node.get("x-kubernetes-validations") or []:
        program = _program(rule["rule"])
        try:
            result = program.evaluate({"self": json_to_cel(value)})
            ok = isinstance(result, celtypes.BoolType) and bool(result)
        except Exception as e:  # an evaluation error rejects the object, as in the API server
            ok = False
            rule = {**rule, "message": f"{rule.get('message', rule['rule'])} ({e})"}
        if not ok:
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        props = node.get("properties") or {}
        for key, sub in value.items():
            child = props.get(key) or (
                node.get("additionalProperties")
                if isinstance(node.get("additionalProperties"), dict)
                else None
            )
            if child is not None:
                errors += _cel_errors(child, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            errors += _cel_errors(node["items"], item, f"{path}[{i}]")
    return errors


def admit(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The object as stored after defaulting, and every schema/CEL error (empty when admitted)."""
    root = schema(obj["kind"])
    defaulted = apply_defaults(root, obj)
    validator = jsonschema.Draft7Validator(root)
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(defaulted)
    ]
    errors += _cel_errors(root, defaulted, "")
    return defaulted, errors
