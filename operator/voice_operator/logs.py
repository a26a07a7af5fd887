"""The operator's logs in the agent's JSON schema (docs/api.md, "Logs"), so one pipeline parses both.

kopf sets up the root handler and its levels; in JSON mode its formatter is replaced by the agent's,
with kopf's object reference under `k8s` and its bookkeeping attributes left out.
"""

import logging

import kopf

from voice_agent.telemetry.logs import JsonFormatter

# What kopf attaches to its records for its own use (posting events, settings), not worth a log key.
KOPF_BOOKKEEPING = ("k8s_skip", "settings")


def json_formatter() -> JsonFormatter:
    return JsonFormatter(rename={"k8s_ref": "k8s"}, omit=KOPF_BOOKKEEPING)


def configure_logging(level: str, fmt: str) -> None:
    """`level`: DEBUG, INFO, WARNING or ERROR; `fmt`: json or plain (config.OperatorConfig)."""
    root = logging.getLogger()
    before = set(root.handlers)
    kopf.configure(
        verbose=level == "DEBUG",
        quiet=level in {"WARNING", "ERROR"},
        log_format=kopf.LogFormat.FULL,
    )
    if fmt == "json":
        for handler in root.handlers:
            if handler not in before:
                handler.setFormatter(json_formatter())
