"""The signaling wire protocol: what parses, what each bad input is refused with, and that the
schema the web client's types come from, and the docs, match the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_signaling_errors import real_offer
from voice_agent.protocol.signaling import (
    AiResponseEvent,
    CloseCode,
    ErrorCode,
    IceCandidate,
    IceCandidateEvent,
    Offer,
    Ping,
    PongEvent,
    SignalingError,
    Text,
    error_event,
    json_schema,
    parse_candidate,
    parse_event,
    parse_frame,
    parse_message,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "frontend" / "src" / "signaling" / "protocol.schema.json"
MAX_BYTES = 64 * 1024
HOST = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    import asyncio

    return asyncio.run(real_offer())


def refusal(frame: str | bytes | None) -> SignalingError:
    with pytest.raises(SignalingError) as err:
        parse_frame(frame, MAX_BYTES)
    assert err.value.message
    return err.value


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "answer", "sdp": "v=0"},
        {"type": "ice-candidate", "candidate": HOST, "sdpMid": "0", "sdpMLineIndex": 0},
        {"type": "ice-candidate", "candidate": HOST, "sdpMLineIndex": 0},
        {"type": "ice-candidate", "candidate": None, "sdpMid": None, "sdpMLineIndex": None},
        {"type": "text", "text": "what time is it"},
        {"type": "interrupt"},
        {"type": "ping", "ts": 17},
        {"type": "ping", "ts": None},
        {"type": "client_metrics", "voice_to_voice_ms": 412.5},
        {"type": "client_metrics", "voice_to_voice_ms": 30000},
        {"type": "held", "turn": 3, "unheard_ms": 87.5},
        {"type": "held", "turn": 0, "unheard_ms": 0},
        {"type": "end"},
    ],
)
def test_every_message_parses_and_relays_as_itself(msg: dict[str, Any]) -> None:
    parsed = parse_frame(json.dumps(msg), MAX_BYTES)
    assert parsed.type == msg["type"]
    defaults = {"sdpMid": None, "sdpMLineIndex": None} if msg["type"] == "ice-candidate" else {}
    assert parsed.wire() == {**defaults, **msg}
    assert parse_message(parsed.wire()) == parsed, "the owner of a relayed call parses what the edge sends"


def test_an_offer_parses_and_keeps_its_sdp(offer_sdp: str) -> None:
    parsed = parse_frame(json.dumps({"type": "offer", "sdp": offer_sdp}), MAX_BYTES)
    assert isinstance(parsed, Offer) and parsed.sdp == offer_sdp


def test_parsing_normalises_what_the_call_would_otherwise_redo() -> None:
    text = parse_message({"type": "text", "text": "  hello  "})
    assert isinstance(text, Text) and text.text == "hello"
    end = parse_message({"type": "ice-candidate", "candidate": ""})
    assert isinstance(end, IceCandidate) and end.candidate is None and end.rtc() is None
    unknown_fields = parse_message({"type": "interrupt", "reason": "ignored", "extra": [1]})
    assert unknown_fields.wire() == {"type": "interrupt"}


def test_a_ping_echoes_any_json_however_deep() -> None:
    ts: Any = "leaf"
    for _ in range(400):
        ts = [ts]
    ping = parse_message({"type": "ping", "ts": ts})
    assert isinstance(ping, Ping)
    assert json.loads(json.dumps(PongEvent(ts=ping.ts).wire())) == {"type": "pong", "ts": ts}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (None, ErrorCode.INVALID_MESSAGE),
        (b'{"type": "ping"}', ErrorCode.INVALID_MESSAGE),
        ("x" * (MAX_BYTES + 1), ErrorCode.FRAME_TOO_LARGE),
        ("{not json", ErrorCode.INVALID_JSON),
        ("[" * 20_000 + "]" * 20_000, ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        ('"offer"', ErrorCode.INVALID_MESSAGE),
        ('{"sdp": "v=0"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": 7}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "teleport"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "offer"}', ErrorCode.MISSING_FIELD),
        ('{"type": "answer"}', ErrorCode.MISSING_FIELD),
        ('{"type": "text"}', ErrorCode.MISSING_FIELD),
        ('{"type": "ice-candidate", "sdpMid": "0"}', ErrorCode.MISSING_FIELD),
        ('{"type": "offer", "sdp": 42}', ErrorCode.INVALID_SDP),
        ('{"type": "offer", "sdp": ""}', ErrorCode.INVALID_SDP),
        ('{"type": "offer", "sdp": "hello"}', ErrorCode.INVALID_SDP),
        ('{"type": "offer", "sdp": "v=0\\r\\ns=-\\r\\n"}', ErrorCode.INVALID_SDP),
        ('{"type": "answer", "sdp": 5}', ErrorCode.UNEXPECTED_ANSWER),
        ('{"type": "text", "text": 5}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "text", "text": " \\n "}', ErrorCode.INVALID_MESSAGE),
        (json.dumps({"type": "text", "text": "x" * 2001}), ErrorCode.INVALID_MESSAGE),
        ('{"type": "client_metrics"}', ErrorCode.MISSING_FIELD),
        ('{"type": "client_metrics", "voice_to_voice_ms": -20}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": 0}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": 30001}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": 1e308}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": NaN}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": Infinity}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": "fast"}', ErrorCode.INVALID_METRIC),
        ('{"type": "client_metrics", "voice_to_voice_ms": true}', ErrorCode.INVALID_METRIC),
        ('{"type": "held", "turn": 1}', ErrorCode.MISSING_FIELD),
        ('{"type": "held", "turn": -1, "unheard_ms": 80}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "held", "turn": 1, "unheard_ms": -1}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "held", "turn": 1, "unheard_ms": 1001}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "held", "turn": 1, "unheard_ms": NaN}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "ice-candidate", "candidate": 5, "sdpMid": "0"}', ErrorCode.INVALID_CANDIDATE),
        (
            '{"type": "ice-candidate", "candidate": "candidate:garbage", "sdpMid": "0"}',
            ErrorCode.INVALID_CANDIDATE,
        ),
        (json.dumps({"type": "ice-candidate", "candidate": HOST}), ErrorCode.INVALID_CANDIDATE),
        (json.dumps({"type": "ice-candidate", "candidate": HOST, "sdpMid": 0}), ErrorCode.INVALID_CANDIDATE),
        (
            json.dumps({"type": "ice-candidate", "candidate": HOST, "sdpMLineIndex": True}),
            ErrorCode.INVALID_CANDIDATE,
        ),
        (
            json.dumps({"type": "ice-candidate", "candidate": HOST + " " * 1024, "sdpMid": "0"}),
            ErrorCode.INVALID_CANDIDATE,
        ),
    ],
)
def test_each_bad_input_is_refused_with_its_code(frame: str | bytes | None, code: str) -> None:
    assert refusal(frame).code == code


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda sdp: sdp.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 ZZ:"), "fingerprint"),
        (lambda sdp: sdp.replace("a=ice-ufrag:", "a=ice-ufrag-x:"), "ICE credentials"),
        (lambda sdp: sdp.replace("opus/48000/2", "FOO/8000"), "Opus"),
        (lambda sdp: sdp.split("m=audio")[0], "audio m-line"),
        (lambda sdp: sdp + "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n" * 65, "candidates"),
        (lambda sdp: sdp + "a=x:" + "y" * 33_000 + "\r\n", "larger than"),
    ],
)
def test_a_hostile_offer_is_refused_before_aiortc_sees_it(offer_sdp: str, mutate: Any, reason: str) -> None:
    err = refusal(json.dumps({"type": "offer", "sdp": mutate(offer_sdp)}))
    assert err.code == ErrorCode.INVALID_SDP and reason in err.message, err.message


def test_a_missing_field_is_named_before_anything_else_is_judged() -> None:
    err = refusal(json.dumps({"type": "ice-candidate", "sdpMid": 5, "sdpMLineIndex": "x"}))
    assert err.code == ErrorCode.MISSING_FIELD and "'candidate'" in err.message


def test_candidates_convert_for_aiortc_typed_or_as_received() -> None:
    received = {"type": "ice-candidate", "candidate": HOST, "sdpMid": "0", "sdpMLineIndex": 0, "_at": 1.0}
    rtc = parse_candidate(received)
    assert rtc is not None and (rtc.ip, rtc.port, rtc.sdpMid, rtc.sdpMLineIndex) == (
        "127.0.0.1",
        50000,
        "0",
        0,
    )
    typed = parse_message(received)
    assert isinstance(typed, IceCandidate) and parse_candidate(typed) == rtc
    assert parse_candidate({"candidate": None}) is None
    with pytest.raises(SignalingError) as err:
        parse_candidate({"candidate": "candidate:nonsense", "sdpMid": "0"})
    assert err.value.code == ErrorCode.INVALID_CANDIDATE


def test_an_error_code_outside_the_table_is_a_bug_caught_at_once() -> None:
    with pytest.raises(ValueError, match="no_such_code"):
        SignalingError("no_such_code", "never sent")
    assert SignalingError("invalid_sdp", "x").code is ErrorCode.INVALID_SDP


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "session",
            "session": {
                "id": "s1",
                "status": "connected",
                "pool": "default",
                "owner": "agent-1",
                "expires_at": "2030-01-01T00:00:00+00:00",
                "history": [{"role": "user", "content": "hi", "interrupted": False}],
                "ice_servers": [{"urls": ["stun:127.0.0.1:3478"]}],
                "peer_connections": {},
            },
        },
        {"type": "answer", "sdp": "v=0"},
        {"type": "ice-candidate", "candidate": HOST, "sdpMid": "0", "sdpMLineIndex": 0},
        {"type": "ice-candidate", "candidate": None, "sdpMid": None, "sdpMLineIndex": None},
        {"type": "status", "processing": "speaking"},
        {"type": "transcript", "text": "what time", "final": False},
        {"type": "ai_response", "text": "It is noon.", "final": True, "provider": "groq"},
        {"type": "ai_response", "text": "It", "final": False},
        {
            "type": "metrics",
            "turn": {
                "stt_ms": 1.0,
                "llm_first_token_ms": None,
                "tts_first_audio_ms": 3,
                "voice_to_voice_ms": 4,
            },
        },
        {"type": "error", "code": "invalid_sdp", "message": "sdp must start with v=0"},
        {"type": "error", "code": "tts_timeout", "message": "provider timed out"},
        {"type": "pong", "ts": None},
    ],
)
def test_every_event_the_agent_sends_is_described_exactly(event: dict[str, Any]) -> None:
    parsed = parse_event(event)
    assert parsed.wire() == event, "an event must survive the models unchanged: field for field"


def test_events_built_by_the_agent_look_as_they_always_did() -> None:
    assert error_event(ErrorCode.REPLACED, "taken over") == {
        "type": "error",
        "code": "replaced",
        "message": "taken over",
    }
    assert json.dumps(error_event(ErrorCode.RATE_LIMITED, "slow")) == (
        '{"type": "error", "code": "rate_limited", "message": "slow"}'
    )
    assert IceCandidateEvent(candidate=None, sdpMid=None, sdpMLineIndex=None).wire() == {
        "type": "ice-candidate",
        "candidate": None,
        "sdpMid": None,
        "sdpMLineIndex": None,
    }
    assert PongEvent().wire() == {"type": "pong", "ts": None}
    assert "provider" not in AiResponseEvent(text="a", final=True).wire()


def test_an_error_event_with_a_code_of_no_kind_is_not_protocol() -> None:
    with pytest.raises(ValueError, match="code"):
        parse_event({"type": "error", "code": "whatever", "message": "x"})


def test_committed_schema_is_what_the_models_export() -> None:
    committed = json.loads(SCHEMA.read_text())
    assert committed == json_schema(), "run `npm run signaling:generate` in frontend/ and commit the result"


def test_the_schema_names_both_directions_and_both_code_tables() -> None:
    defs = json_schema()["$defs"]
    client = set(defs["ClientMessage"]["discriminator"]["mapping"])
    server = set(defs["ServerEvent"]["discriminator"]["mapping"])
    assert client == {"offer", "answer", "ice-candidate", "text", "interrupt", "ping", "end"} | {
        "client_metrics",
        "held",
    }
    assert server == {"session", "answer", "offer", "ice-candidate", "status", "transcript"} | {
        "ai_response",
        "ai_interrupted",
        "playback",
        "metrics",
        "error",
        "pong",
    }
    assert defs["ErrorCode"]["enum"] == [c.value for c in ErrorCode]
    assert defs["CloseCode"]["enum"] == [c.value for c in CloseCode]


def test_every_code_is_documented() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    signaling = doc[doc.index("## Signaling") : doc.index("## Metrics")]
    missing = [f"`{c.value}`" for c in ErrorCode if f"`{c.value}`" not in signaling]
    missing += [f"| {c.value} |" for c in CloseCode if f"| {c.value} |" not in signaling]
    assert not missing, f"add to docs/api.md (Signaling): {missing}"
