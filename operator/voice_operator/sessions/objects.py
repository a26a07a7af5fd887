"""A session record as a VoiceSession, a Table row, a timeline: pure functions of what Redis holds.

The record is the agent's SessionRecord JSON (voice_agent/protocol/sessions.py) read as plain data:
only the fields shown here are looked at, so a record an agent of another version wrote still lists.
What was said (history contents, transcript, reply) leaves the operator only for a pool whose
spec.session.exposeTranscripts is true; otherwise the timeline counts words.
"""

import dataclasses
import datetime
import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from voice_operator import constants as c

GROUP: Final = "sessions.voicepool.dev"
VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "VoiceSession"
PLURAL: Final = "voicesessions"
SINGULAR: Final = "voicesession"
VERBS: Final = ("get", "list", "watch", "delete")

# uid: stable per pool and session id (kubectl delete waits on it), never reused across pools.
_UID_NAMESPACE = uuid.UUID("6f1c1a5e-3d1b-4f57-9a53-5b7c2a1e0d42")

COLUMNS: Final[Sequence[tuple[str, str, str]]] = (
    ("Name", "string", "The session id (what clients reconnect with)."),
    ("Pool", "string", "The VoiceAgentPool whose agents run the session."),
    ("Agent", "string", "The agent that holds the session now (empty: suspended, held by none)."),
    ("Status", "string", "created, connected or disconnected (suspended, resumable)."),
    ("Turns", "integer", "Turns the caller has taken."),
    ("Last V2V", "string", "Voice-to-voice latency of the last turn."),
    ("Age", "string", "Time since the session was created."),
)


@dataclasses.dataclass(frozen=True)
class PoolRef:
    """A VoiceAgentPool as the sessions API needs it: where its sessions are and what may be shown."""

    namespace: str
    name: str
    redis_url: str | None
    transcripts: bool = False

    @property
    def pool_id(self) -> str:
        return c.pool_id(self.namespace, self.name)


@dataclasses.dataclass(frozen=True)
class Session:
    pool: PoolRef
    id: str
    owner: str
    record: Mapping[str, Any]

    @functools.cached_property
    def status(self) -> str:
        return str(self.record.get("status") or "created")

    @functools.cached_property
    def history(self) -> list[Mapping[str, Any]]:
        history = self.record.get("history")
        return [m for m in history if isinstance(m, Mapping)] if isinstance(history, list) else []

    @functools.cached_property
    def turns(self) -> int:
        return sum(1 for m in self.history if m.get("role") == "user")

    @functools.cached_property
    def voice_to_voice_ms(self) -> float | None:
        last = (self.record.get("metrics") or {}).get("last_turn")
        value = last.get("voice_to_voice_ms") if isinstance(last, Mapping) else None
        return float(value) if isinstance(value, int | float) else None

    @functools.cached_property
    def created(self) -> datetime.datetime | None:
        return self.time("created_at")

    @functools.cached_property
    def created_rfc3339(self) -> str | None:
        return rfc3339(self.created)

    def time(self, field: str) -> datetime.datetime | None:
        raw = self.record.get(field)
        try:
            stamp = datetime.datetime.fromisoformat(str(raw))
        except ValueError:
            return None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a watcher compares to tell a change it shows from one it does not."""
        return (self.owner, self.status, self.turns, self.voice_to_voice_ms, self.record.get("last_activity"))


def rfc3339(stamp: datetime.datetime | None) -> str | None:
    if stamp is None:
        return None
    return stamp.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def human_duration(seconds: float) -> str:
    """Ages as kubectl prints them (k8s.io/apimachinery duration.HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    s = max(s, 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 8 * 365 else f"{days // 365}y"


def metadata(session: Session, uid: bool = True) -> dict[str, Any]:
    """`uid` costs a SHA-1 per session: a Table row (what kubectl prints) goes without."""
    meta = {
        "name": session.id,
        "namespace": session.pool.namespace,
        "resourceVersion": "0",
        "creationTimestamp": session.created_rfc3339,
        "labels": {c.POOL_LABEL: session.pool.name},
    }
    if uid:
        meta["uid"] = str(uuid.uuid5(_UID_NAMESPACE, f"{session.pool.pool_id}/{session.id}"))
    return meta


def _words(text: Any) -> int:
    return len(str(text or "").split())


def timeline(session: Session) -> list[str]:
    """The call in order: created, each utterance (its words only where the pool allows), now.

    Records keep one time per session, not per message: the turns are numbered, not stamped.
    """
    show = session.pool.transcripts
    lines = [f"{rfc3339(session.time('created_at'))} created in pool {session.pool.name}"]
    turn = 0
    for message in session.history:
        role = message.get("role")
        if role == "user":
            turn += 1
        who = {"user": "caller", "assistant": "agent"}.get(str(role))
        if who is None:
            continue
        content = message.get("content")
        said = f': "{content}"' if show else f" ({_words(content)} words)"
        cut = ", interrupted" if message.get("interrupted") else ""
        lines.append(f"turn {turn}: {who}{cut}{said}")
    v2v = session.voice_to_voice_ms
    if v2v is not None:
        lines.append(f"last turn: {round(v2v)} ms voice to voice")
    held = f"on agent {session.owner}" if session.owner else "held by no agent"
    lines.append(f"{rfc3339(session.time('last_activity'))} last activity; {session.status}, {held}")
    lines.append(f"{rfc3339(session.time('expires_at'))} expires unless active")
    return lines


def voice_session(session: Session) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": session.status,
        "agent": session.owner,
        "turns": session.turns,
        "speaking": bool(session.record.get("is_ai_speaking")),
        "lastActivity": rfc3339(session.time("last_activity")),
        "expiresAt": rfc3339(session.time("expires_at")),
        "timeline": timeline(session),
    }
    if session.voice_to_voice_ms is not None:
        status["lastVoiceToVoiceMs"] = round(session.voice_to_voice_ms)
    if session.pool.transcripts:
        status["transcript"] = str(session.record.get("transcript") or "")
        status["aiResponse"] = str(session.record.get("ai_response") or "")
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": metadata(session),
        "spec": {"pool": session.pool.name},
        "status": status,
    }


def voice_session_list(sessions: Iterable[Session], resource_version: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": f"{KIND}List",
        "metadata": {"resourceVersion": resource_version},
        "items": [voice_session(s) for s in sessions],
    }


def age(session: Session, now: datetime.datetime) -> str:
    created = session.created
    return human_duration((now - created).total_seconds()) if created else ""


def table_row(session: Session, now: datetime.datetime) -> dict[str, Any]:
    v2v = session.voice_to_voice_ms
    return {
        "cells": [
            session.id,
            session.pool.name,
            session.owner,
            session.status,
            session.turns,
            f"{round(v2v)}ms" if v2v is not None else "",
            age(session, now),
        ],
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata(session, uid=False),
        },
    }


def table(sessions: Iterable[Session], resource_version: str, now: datetime.datetime) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": text}
            | {"priority": 0}
            for name, kind, text in COLUMNS
        ],
        "rows": [table_row(s, now) for s in sessions],
    }


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class EncodedRow:
    """A session's Table row as JSON, written once per change of the session: a list joins these and
    writes only the Age cell, the one that changes with the clock (`head` ends where Age goes)."""

    session: Session
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, session: Session) -> "EncodedRow":
        row = table_row(session, datetime.datetime.now(datetime.UTC))
        cells = _compact(row["cells"][:-1])
        return cls(session, b'{"cells":' + cells[:-1] + b",", b'],"object":' + _compact(row["object"]) + b"}")

    def encode(self, now: datetime.datetime) -> bytes:
        # An age is digits and unit letters (or "<invalid>"): nothing JSON would escape.
        return self.head + b'"' + age(self.session, now).encode() + b'"' + self.tail


def table_json(rows: Iterable[EncodedRow], resource_version: str, now: datetime.datetime) -> bytes:
    """table() of these rows' sessions as JSON (compact: kubectl decodes every byte of a long list),
    from rows already encoded."""
    empty = _compact(table((), resource_version, now))
    return empty[: -len(b"[]}")] + b"[" + b",".join(r.encode(now) for r in rows) + b"]}"


def qualified(name: str | None = None) -> str:
    """How the API server names a resource in its errors: `voicesessions.sessions.voicepool.dev "ID"`."""
    return f'{PLURAL}.{GROUP} "{name}"' if name else f"{PLURAL}.{GROUP}"
