"""Docs that match the code: every setting is documented under the name users set."""

from __future__ import annotations

from pathlib import Path

from voice_agent.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def env_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.append(f"VOICE_{name.upper()}")
        else:
            names.append(alias if isinstance(alias, str) else str(alias.choices[0]))  # type: ignore[union-attr]
    return names


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [n for n in env_names() if f"`{n}`" not in text]
    assert not missing, f"add to docs/configuration.md: {missing}"
