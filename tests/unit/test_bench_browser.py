"""bench.browser's summary of the page's raw figures, and of the agent's account beside them."""

from __future__ import annotations

from typing import Any

from bench.browser import report, summarize, summarize_start


def raw(agent: bool = True) -> dict[str, Any]:
    run = {
        "run": 1,
        "context": {"state": "running", "sampleRate": 48000, "baseLatency": 0.01, "outputLatency": 0},
        "clock": [],
        "receiver": {"jitterMs": 2.5, "jitterBufferMs": 60.0, "targetDelayMs": 55.0, "concealedPercent": 0.4},
        "turns": [
            {"voiceToVoiceMs": 400.0, "bufferMs": 40.0, "dashboardMs": 412},
            {"voiceToVoiceMs": 500.0, "bufferMs": 60.0, "dashboardMs": 494},
            {"voiceToVoiceMs": 450.0},
            {"failed": "no reply"},
        ],
        "bargeIns": [
            {"bargeInMs": 150.0, "bufferMs": 45.0},
            {"failed": "agent did not stop", "bufferMs": 300.0},
        ],
    }
    out: dict[str, Any] = {"runs": 1, "turnsPerRun": 3, "bargeInsPerRun": 2, "perRun": [run]}
    if agent:
        out["agent"] = {
            "turnDecisions": {"complete": 3.0, "fallback": 1.0},
            # Cumulative, as Prometheus has them: 1 turn by 0.2 s, 3 by 0.25 s, all 4 by 0.5 s.
            "turnEndSilence": {"buckets": [[0.2, 1.0], [0.25, 3.0], [0.5, 4.0]], "sumS": 1.0, "count": 4.0},
            "interruptions": {"real": 1.0},
            "outputStalledS": 0.0125,
            "outputLateFrames": 2.0,
        }
    return out


def test_the_agents_account_is_summarized_beside_the_page_figures() -> None:
    s = summarize(raw())
    assert s["latency"]["voice_to_voice_ms"]["n"] == 3 and s["latency"]["failures"] == {"no reply": 1}
    receiver = s["receiver"]
    assert receiver["target_delay_ms"]["p50"] == 55.0 and receiver["arrival_jitter_ms"]["p50"] == 2.5
    account = s["agent"]
    assert account["turn_decisions"] == {"complete": 3.0, "fallback": 1.0}
    # Half of 4 turns were taken by 0.25 s (3 of them): the median's bucket bound, in ms.
    assert account["turn_end_silence_ms"] == {"n": 4.0, "mean": 250.0, "p50_at_most": 250.0}
    assert account["output_stalled_ms"] == 12.5 and account["output_late_frames"] == 2.0

    table = report({"configs": {"default": {"turn_detector": "adaptive", **s}}})
    assert "| Agent: end-of-turn decisions by outcome | complete 3, fallback 1 |" in table
    assert "| Agent: silence waited before taking the turn, mean | 250 ms |" in table
    assert "jitterBufferTargetDelay" in table
    # The buffer over the barge-ins counts the missed one too: a stop hidden by the buffer shows there.
    assert "| Browser playout buffer during the timed turns / barge-ins, p50 | 50 ms / 172.5 ms |" in table


def test_results_from_before_the_agents_account_still_make_their_table() -> None:
    s = summarize(raw(agent=False))
    assert s["agent"] is None
    del s["receiver"]["target_delay_ms"], s["latency"]["buffer_ms"], s["barge_in"]["buffer_ms"]
    table = report({"configs": {"default": {"turn_detector": "adaptive", **s}}})
    assert "Agent:" not in table and "jitterBufferTargetDelay" not in table and "timed turns" not in table
    assert "Voice-to-voice" in table


def test_the_dashboards_figure_is_compared_with_the_pages_own_turn_by_turn() -> None:
    dashboard = summarize(raw())["latency"]["dashboard"]
    # 412 against 400 and 494 against 500: apart by 12 and 6 ms, the dashboard once above, once below.
    assert dashboard["difference_ms"]["n"] == 2 and dashboard["difference_ms"]["p50"] == 9.0
    assert dashboard["signed_ms"]["mean"] == 3.0
    # A turn heard in the page that the dashboard showed nothing for is counted, not dropped.
    assert dashboard["missing"] == 1
    table = report({"configs": {"default": {"turn_detector": "adaptive", **summarize(raw())}}})
    row = "| The dashboard's heard figure apart from this one, same turn (turns it showed none) | 9 / "
    assert row in table and "ms (1) |" in table


def test_click_to_connected_gets_its_rows_under_the_default_column() -> None:
    runs = [
        {
            "clickToConnected": 140.0 + i,
            "sessionAsked": 1.0,
            "micOpen": 30.0,
            "sessionReady": 25.0 + i,
            "answer": 90.0,
        }
        for i in range(4)
    ]
    start = summarize_start({"idleMs": 1500, "runs": runs})
    assert start["pages"] == 4 and start["click_to_connected_ms"]["p50"] == 141.5
    # In the order the page takes them, whatever order the page recorded them in.
    assert list(start["steps_p50_ms"]) == ["sessionAsked", "micOpen", "sessionReady", "answer"]
    s = summarize(raw())
    table = report({"configs": {"default": s, "fixed": s}, "start": start})
    assert "| Click → connected, 4 fresh pages idle 1500 ms | 141.5 / " in table
    assert (
        "| Its steps, p50 ms after the click | sessionAsked 1, micOpen 30, sessionReady 26.5, answer 90 | — |"
        in table
    )


def test_voice_to_voice_beyond_the_silence_the_agent_waited() -> None:
    """What the detector's setting does not explain: the heard figure minus the agent's mean wait."""
    s = summarize(raw())
    # Heard 400, 450, 500 ms; the agent waited 250 ms on average before taking a turn.
    over = s["latency"]["over_silence_ms"]
    assert over == {"silence_waited_ms": 250.0, "p50": 200.0, "p95": 245.0, "p99": 249.0}
    assert summarize(raw(agent=False))["latency"]["over_silence_ms"] is None


def test_each_turn_is_split_into_its_parts_on_the_wall_clock() -> None:
    """The page's end of speech and reply heard, the agent's steps in between: parts that add up."""
    steps = {"loud_end_ms": -100.0, "taken_ms": 200.0, "stt_ms": 215.0, "audio_ready_ms": 220.0}
    split = {
        "voiceToVoiceMs": 400.0,
        "endUnixMs": 1_000_000.0,
        "replyUnixMs": 1_000_400.0,
        # The agent's last voiced frame 130 ms after the page's end, its last loud one 30 ms after.
        "agent": {"voice_end_unix_ms": 1_000_130.0, **steps, "voice_to_voice_ms": 230.0},
    }
    unmatched = {"voiceToVoiceMs": 500.0, "endUnixMs": 2_000_000.0, "replyUnixMs": 2_000_500.0}
    r = raw()
    r["perRun"][0]["turns"] = [split, unmatched, {"failed": "no reply"}]
    lat = summarize(r)["latency"]
    parts = {k: v["p50"] for k, v in lat["parts"]["parts_ms"].items()}
    assert parts == {
        "to_agent": 30.0,
        "vad_hangover": 100.0,
        "silence": 200.0,
        "decode": 15.0,
        "reply": 5.0,
        "slot": 10.0,
        "to_ear": 40.0,
    }
    assert lat["parts"]["turns"] == 1
    # Beyond the silence turn by turn, not the heard figures less the histogram's mean.
    assert lat["over_silence_ms"] == {"silence_waited_ms": 200.0, "p50": 200.0, "p95": 200.0, "p99": 200.0}
    table = report({"configs": {"default": {"turn_detector": "adaptive", **summarize(r)}}})
    assert "to_agent 30, vad_hangover 100, silence 200, decode 15, reply 5, slot 10, to_ear 40 (1) |" in table
    assert "drafted" not in table, "a run without the agent's drafts has no row for them"
    r["agent"]["drafts"] = {"used": 5.0, "missed": 1.0}
    table = report({"configs": {"default": {"turn_detector": "adaptive", **summarize(r)}}})
    assert "| Agent: replies drafted in the pause, by outcome | missed 1, used 5 |" in table
