"""The agent and the operator log JSON with the same keys (docs/api.md, "Logs")."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from voice_agent.telemetry.logs import configure_logging as configure_agent_logging
from voice_agent.telemetry.logs import session_id_var
from voice_operator.logs import configure_logging as configure_operator_logging

SCHEMA = ["ts", "level", "logger", "msg"]
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """Each process configures the root logger; put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines_from(root: logging.Logger, before: list[logging.Handler], emit: Any) -> list[dict[str, Any]]:
    """Emit through the handler the process installed, into a buffer: its own stream is stderr."""
    (handler,) = [h for h in root.handlers if h not in before]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    emit()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def agent_lines(root: logging.Logger) -> list[dict[str, Any]]:
    before = list(root.handlers)
    configure_agent_logging("INFO", "json")

    def emit() -> None:
        token = session_id_var.set("s-1")
        try:
            logging.getLogger("voice_agent.sessions.manager").warning("call ended", extra={"code": 1000})
        finally:
            session_id_var.reset(token)

    return lines_from(root, before, emit)


def operator_lines(root: logging.Logger) -> list[dict[str, Any]]:
    before = list(root.handlers)
    configure_operator_logging("INFO", "json")
    body = {"apiVersion": "voicepool.dev/v1alpha1", "kind": "VoiceAgentPool"}
    body["metadata"] = {"name": "demo", "namespace": "default", "uid": "u-1"}

    def emit() -> None:
        logger = kopf.LocalObjectLogger(body=kopf.Body(body), settings=kopf.OperatorSettings())
        logger.warning("agent Deployment updated", extra={"code": 1000})

    return lines_from(root, before, emit)


def test_agent_and_operator_lines_have_the_same_keys(root_logging: logging.Logger) -> None:
    (agent,) = agent_lines(root_logging)
    (operator,) = operator_lines(root_logging)
    for line in (agent, operator):
        assert list(line)[:4] == SCHEMA, line
        assert TS.fullmatch(line["ts"]) and line["level"] == "warning" and line["code"] == 1000
    assert agent["session_id"] == "s-1" and agent["msg"] == "call ended"
    assert operator["msg"] == "agent Deployment updated"
    assert operator["k8s"]["name"] == "demo" and operator["k8s"]["namespace"] == "default"
    assert set(operator) - set(agent) == {"k8s"}, "kopf's bookkeeping stays out of the lines"
    assert set(agent) - set(operator) == {"session_id"}
