"""Structured logging: one JSON object per line, the session id on every line of a session.

The session id travels in a context variable, so every log call made while serving a session
(including from tasks spawned for it) carries it without threading it through call sites.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

session_id_var: ContextVar[str | None] = ContextVar("session_id", default=None)

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class _SessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "session_id"):
            record.session_id = session_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One log schema for the agent and the operator (docs/api.md, "Logs"): `ts`, `level`, `logger`,
    `msg`, then the record's extras, `exc` last. The operator renames kopf's object reference and
    drops its bookkeeping attributes (`rename`, `omit`), so one log pipeline parses both."""

    def __init__(self, rename: Mapping[str, str] | None = None, omit: Iterable[str] = ()) -> None:
        super().__init__()
        self._rename = dict(rename or {})
        self._omit = _STD_ATTRS | frozenset(omit)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._omit and value is not None:
                out[self._rename.get(key, key)] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        sid = getattr(record, "session_id", None)
        prefix = f"[{sid}] " if sid else ""
        base = f"{record.levelname:<7} {record.name}: {prefix}{record.getMessage()}"
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_SessionFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioice", "aiortc", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
