"""Kubernetes' protobuf encoding, read for the one kind kubectl sends that way in the tests: Secrets.

kubectl's typed clients (`kubectl create secret ...`) post built-in kinds as protobuf, which kmock
cannot read; the test API server turns such a body into its JSON form first (cluster.py). Field
numbers are those of k8s.io/api's generated.proto.
"""

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a message: varints as int, length-delimited fields as bytes."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            size, at = _varint(data, at)
            yield number, data[at : at + size]
            at += size
        else:
            raise ValueError(f"wire type {wire} is not used by the kinds read here")


def _text(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def _entry(value: int | bytes) -> tuple[str, bytes]:
    """A map entry: key 1, value 2."""
    assert isinstance(value, bytes)
    found = dict(_fields(value))
    key, item = found.get(1, b""), found.get(2, b"")
    assert isinstance(key, bytes) and isinstance(item, bytes)
    return key.decode(), item


def _metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for number, value in _fields(data):
        if number in (1, 2, 3):
            meta[("name", "generateName", "namespace")[number - 1]] = _text(value)
        elif number in (11, 12):
            key, item = _entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
    return meta


def _secret(data: bytes) -> dict[str, Any]:
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret"}
    for number, value in _fields(data):
        if number == 1:
            assert isinstance(value, bytes)
            secret["metadata"] = _metadata(value)
        elif number == 2:
            key, item = _entry(value)
            secret.setdefault("data", {})[key] = base64.b64encode(item).decode()
        elif number == 3:
            secret["type"] = _text(value)
        elif number == 4:
            key, item = _entry(value)
            secret.setdefault("stringData", {})[key] = item.decode()
        elif number == 5:
            secret["immutable"] = bool(value)
    return secret


def decode(body: bytes) -> dict[str, Any] | None:
    """The JSON form of a protobuf-encoded object, or None for a kind this module does not read."""
    if not body.startswith(MAGIC):
        return None
    unknown = dict(_fields(body[len(MAGIC) :]))
    type_meta, raw = unknown.get(1, b""), unknown.get(2, b"")
    assert isinstance(type_meta, bytes) and isinstance(raw, bytes)
    meta = dict(_fields(type_meta))
    return _secret(raw) if (meta.get(1), meta.get(2)) == (b"v1", b"Secret") else None
