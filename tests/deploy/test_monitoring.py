"""Monitoring: the dashboard and alerts use the metric names the agent and operator really export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from prometheus_client import REGISTRY

import voice_agent.telemetry.metrics
import voice_operator.metrics
from tests.deploy.manifests import MANIFESTS, ROOT, Obj, named, render
from voice_operator import constants as c
from voice_operator.objects import pool_labels

# The five `webrtc_*` metrics that docs/api.md ("Metrics") holds to as a fixed contract.
WEBRTC_METRICS = {
    "webrtc_websocket_connections_total",
    "webrtc_active_sessions_total",
    "webrtc_peer_connections_total",
    "webrtc_signaling_messages_total",
    "webrtc_signaling_latency_seconds",
}
PIPELINE_HISTOGRAMS = {
    "voice_stt_final_seconds",
    "voice_llm_first_token_seconds",
    "voice_tts_first_audio_seconds",
    "voice_voice_to_voice_seconds",
    "voice_session_duration_seconds",
}
# Turn-taking (docs/api.md), each shown split by the label that says which detector, outcome or kind.
TURN_TAKING = {
    "voice_turn_end_silence_seconds": "detector",
    "voice_turn_decisions_total": "outcome",
    "voice_interruptions_total": "kind",
}
OURS = re.compile(r"\b((?:webrtc|voice|voicepool)_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported_series() -> set[str]:
    """Every series name the agent and operator modules register (metric families -> sample names)."""
    assert voice_agent.telemetry.metrics and voice_operator.metrics  # imported for their registrations
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
    return names


def dashboard() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (MANIFESTS / "monitoring" / "dashboards" / "voicepool.json").read_text()
    )
    return loaded


def dashboard_exprs() -> Iterator[str]:
    for panel in dashboard()["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            yield target["expr"]


def alert_rules(objs: list[Obj]) -> list[Obj]:
    rule = named(objs, "PrometheusRule", "voicepool")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_dashboard_shows_webrtc_metrics_and_pipeline_latencies() -> None:
    used = {m for expr in dashboard_exprs() for m in OURS.findall(expr)}
    base_names = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert base_names >= WEBRTC_METRICS | PIPELINE_HISTOGRAMS


def test_dashboard_shows_turn_taking_by_detector_outcome_and_kind() -> None:
    for metric, label in TURN_TAKING.items():
        exprs = [e for e in dashboard_exprs() if re.search(rf"\b{metric}(_bucket)?\b", e)]
        assert exprs, f"no panel shows {metric}"
        assert all(re.search(rf"sum by \([^)]*\b{label}\b", e) for e in exprs), exprs
    silence = [e for e in dashboard_exprs() if "voice_turn_end_silence_seconds_bucket" in e]
    quantiles = {q for e in silence for q in re.findall(r"^histogram_quantile\((0\.\d+),", e)}
    assert quantiles == {"0.5", "0.95"}


def test_dashboard_shows_what_users_hear_beside_the_agents_figure() -> None:
    """The page-reported voice-to-voice, p50 and p95 by pool, in the panel with the agent's own."""
    for panel in dashboard()["panels"]:  # type: ignore[attr-defined]
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if any("voice_client_voice_to_voice_seconds_bucket" in e for e in exprs):
            break
    else:
        raise AssertionError("no panel shows voice_client_voice_to_voice_seconds")
    for metric in ("voice_client_voice_to_voice_seconds", "voice_voice_to_voice_seconds"):
        shown = [e for e in exprs if f"{metric}_bucket" in e]
        assert {q for e in shown for q in re.findall(r"^histogram_quantile\((0\.\d+),", e)} == {"0.5", "0.95"}
        assert all(re.search(r"sum by \([^)]*\bpool\b", e) for e in shown), shown


def test_dashboard_and_alerts_reference_only_exported_metrics() -> None:
    exprs = [*dashboard_exprs(), *(r["expr"] for r in alert_rules(render("monitoring")))]
    unknown = {m for expr in exprs for m in OURS.findall(expr)} - exported_series()
    assert not unknown


def test_dashboard_is_grafana_shaped() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    panels = board["panels"]
    assert isinstance(panels, list)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}  # type: ignore[index]
    assert variables == {"datasource", "namespace", "pool"}


def test_alerts_cover_capacity_latency_redis_and_failures() -> None:
    rules = alert_rules(render("monitoring"))
    names = {r["alert"] for r in rules}
    assert names >= {
        "VoiceAgentAtCapacity",
        "VoiceHighVoiceToVoiceLatency",
        "VoiceRedisDown",
        "VoiceSessionsFailing",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+m", rule["for"])


def test_scrape_configs_match_what_the_operator_renders() -> None:
    objs = render("monitoring")
    pod_monitor = named(objs, "PodMonitor", "voice-agents")["spec"]
    assert pod_monitor["selector"]["matchLabels"].items() <= pool_labels("any").items()
    assert pod_monitor["podMetricsEndpoints"][0]["port"] == "http"  # the agent container's port name
    assert c.AGENT_PORT == 8000
    service_monitor = named(objs, "ServiceMonitor", "voicepool-operator")["spec"]
    operator_service = named(render("overlays/prod"), "Service", "voicepool-operator")
    assert (
        service_monitor["selector"]["matchLabels"].items() <= operator_service["metadata"]["labels"].items()
    )
    assert service_monitor["endpoints"][0]["port"] in {p["name"] for p in operator_service["spec"]["ports"]}


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    cm = named(render("monitoring"), "ConfigMap", "voicepool-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["voicepool.json"]) == dashboard()


RUNBOOKS = "https://github.com/voicepool/voicepool/blob/main/"
NON_BASE_UNITS = re.compile(r"_(ms|millis|milliseconds|minutes|hours|kb|mb|kilobytes|megabytes)(_|$)")


def heading_anchors(path: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to -."""
    text = (ROOT / path).read_text()
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    for rule in alert_rules(render("monitoring")):
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith(RUNBOOKS), f"{rule['alert']}: runbook_url {url!r}"
        path, _, anchor = url[len(RUNBOOKS) :].partition("#")
        assert path.startswith("docs/") and (ROOT / path).is_file(), url
        assert anchor in heading_anchors(path), f"{rule['alert']}: no section #{anchor} in {path}"


def test_metric_names_follow_prometheus_conventions() -> None:
    """Counters end in _total, nothing else does, durations are in seconds: except the five
    webrtc_* names, kept as the contract they are (three gauges among them end in _total)."""
    assert voice_agent.telemetry.metrics and voice_operator.metrics  # imported for their registrations
    families = [f for f in REGISTRY.collect() if OURS.fullmatch(f.name) or OURS.fullmatch(f.name + "_total")]
    assert len(families) >= 40
    for family in families:
        exposed = family.name + "_total" if family.type == "counter" else family.name
        if exposed in WEBRTC_METRICS:
            continue
        if family.type != "counter":
            assert not family.name.endswith("_total"), f"{family.type} {family.name} ends in _total"
        assert not NON_BASE_UNITS.search(exposed), f"{exposed}: use seconds and bytes"
        if family.type == "histogram":
            assert re.search(r"_(seconds|bytes|ratio)$", family.name), f"{family.name}: no base unit"


def test_the_runbooks_links_lead_to_sections_that_exist() -> None:
    text = (ROOT / "docs" / "runbooks.md").read_text()
    for target in re.findall(r"\]\(([^)#]*)(?:#([^)]+))?\)", text):
        path = f"docs/{target[0]}" if target[0] else "docs/runbooks.md"
        assert (ROOT / path).is_file(), target
        assert not target[1] or target[1] in heading_anchors(path), f"no section #{target[1]} in {path}"
