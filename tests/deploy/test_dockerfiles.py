"""The images' build recipes: multi-stage, pinned slim Python 3.11, non-root 1000, no build tools in the
final stage, a HEALTHCHECK, OCI labels, offline models and the web UI in the agent image."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.manifests import ROOT

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|clang|npm|node|uv|pip install)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    lines: list[str] = field(default_factory=list)


def stages(path: Path) -> list[Stage]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            out.append(Stage(m.group(1), m.group(2)))
        elif out:
            out[-1].lines.append(line)
    return out


def instructions(stage: Stage, keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stage.lines if line.upper().startswith(keyword + " ")]


@pytest.mark.parametrize("name", ["Dockerfile.agent", "Dockerfile.operator"])
def test_final_stage_is_hardened(name: str) -> None:
    all_stages = stages(ROOT / name)
    assert len(all_stages) >= 2, "multi-stage build"
    final = all_stages[-1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", final.base)
    assert all(":" in s.base and not s.base.endswith(":latest") for s in all_stages)
    assert instructions(final, "USER") == ["1000:1000"]
    assert len(instructions(final, "HEALTHCHECK")) == 1
    labels = " ".join(instructions(final, "LABEL"))
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    runs = " ".join(instructions(final, "RUN"))
    assert not BUILD_TOOLS.search(runs), runs
    copies = instructions(final, "COPY")
    assert all(c.startswith("--from=") for c in copies), "the final stage only copies built artifacts"


def test_agent_image_carries_offline_models_and_web_ui() -> None:
    all_stages = stages(ROOT / "Dockerfile.agent")
    final = all_stages[-1]
    runs = " ".join(instructions(final, "RUN"))
    assert re.search(r"flite=\S+", runs), "flite (offline TTS) installed, version pinned"
    assert "rm -rf /var/lib/apt/lists/*" in runs
    build = next(s for s in all_stages if s.name == "python-build")
    # pocketsphinx and its en-us model come with the locked wheel of the agent extra.
    assert any("--extra agent" in r for r in instructions(build, "RUN"))
    frontend = next(s for s in all_stages if s.name == "frontend")
    assert any("npm ci" in r for r in instructions(frontend, "RUN"))
    assert "--from=frontend /src/frontend/dist /app/web" in instructions(final, "COPY")
    env = " ".join(instructions(final, "ENV"))
    assert "VOICE_WEB_DIR=/app/web" in env
    assert instructions(final, "ENTRYPOINT") == ['["python", "-m", "voice_agent"]']


def test_agent_image_ships_libopus() -> None:
    """The agent's own decoder (FEC, PLC) needs libopus; without it every call falls back to aiortc's."""
    runs = " ".join(instructions(stages(ROOT / "Dockerfile.agent")[-1], "RUN"))
    assert re.search(r"apt-get install [^&]*\blibopus0=\S+", runs), "libopus0 installed, version pinned"


def test_operator_image_runs_the_operator() -> None:
    final = stages(ROOT / "Dockerfile.operator")[-1]
    assert instructions(final, "ENTRYPOINT") == ['["python", "-m", "voice_operator"]']
    assert "8080" in " ".join(instructions(final, "EXPOSE"))


def test_build_context_excludes_secrets_and_local_state() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "**", "deny by default, then allow what the builds need"
    for pattern in ("**/.env", "**/*.pem", "**/*.key", "frontend/node_modules"):
        assert pattern in ignore
