"""The agent's rooms import only downwards (docs/architecture.md, "Rooms"): no circle can creep in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "agent" / "voice_agent"

# Top to bottom; a room may import the rooms listed for it, and nothing else of the agent.
MAY_IMPORT: dict[str, set[str]] = {
    "__main__": {
        "server",
        "pool",
        "sessions",
        "pipeline",
        "providers",
        "store",
        "media",
        "protocol",
        "telemetry",
        "settings",
        "testing",
    },
    "server": {"pool", "sessions", "providers", "store", "protocol", "telemetry", "settings"},
    "pool": {"sessions", "store", "protocol", "telemetry", "settings"},
    "sessions": {"pipeline", "media", "providers", "store", "protocol", "telemetry", "settings"},
    "pipeline": {"providers", "media", "protocol", "telemetry", "settings"},
    "providers": {"media", "protocol", "telemetry", "settings"},
    "testing": {"media", "protocol", "settings"},
    "settings": {"media"},
    "store": {"protocol", "telemetry"},
    "media": {"protocol", "telemetry"},
    "protocol": set(),
    "telemetry": set(),
}


def imported_rooms(path: Path) -> set[str]:
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "voice_agent" and len(parts) > 1 and parts[1] in MAY_IMPORT:
                rooms.add(parts[1])
    return rooms


def test_every_module_is_in_a_known_room() -> None:
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("__py")}
    assert tops - {"__init__"} == set(MAY_IMPORT), "a new room: add it to docs/architecture.md and here"


def test_rooms_import_only_downwards() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        room = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if room == "__init__":
            continue
        for other in imported_rooms(path) - MAY_IMPORT[room] - {room}:
            wrong.append(f"{path.relative_to(PACKAGE)} imports {other}")
    assert not wrong, wrong
