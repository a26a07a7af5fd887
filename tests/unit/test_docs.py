"""Docs that match the code: every setting under the name users set, every metric the agent exports."""

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


def test_every_metric_is_documented() -> None:
    from prometheus_client import REGISTRY

    import voice_agent.store.redis_metrics
    import voice_agent.telemetry.metrics

    modules = (voice_agent.telemetry.metrics.__name__, "voice_agent.store.redis_metrics")
    text = (DOC.parent / "api.md").read_text()
    names = []
    for collector in list(REGISTRY._collector_to_names):
        name = getattr(collector, "_name", None)
        if name is None:
            continue
        if getattr(collector, "_type", "") == "counter" and not name.endswith("_total"):
            name += "_total"
        if name.startswith(("voice_", "webrtc_")):  # other suites in this process register their own
            names.append(name)
    assert len(names) >= 30, f"expected the agent's metrics registered by {modules}"
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"add to docs/api.md (Metrics): {missing}"
