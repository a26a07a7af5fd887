"""The signaling WebSocket's wire protocol: every client message, agent event, error code and close code.

docs/api.md ("Signaling") explains the protocol; these models are what the agent enforces, and the
JSON Schema exported from them (`json_schema`) is what the web client's types are generated from,
so the agent and the page cannot drift apart unnoticed.

A frame is parsed once, where it enters the agent (`parse_frame`, or `parse_message` for a message
relayed from the agent holding the client's socket): past that point everything handles typed
messages, and every way a message can be wrong is a `SignalingError` carrying an `ErrorCode`.
Messages keep the shapes clients already send: unknown fields are ignored, field names are as on
the wire (`sdpMid`, not `sdp_mid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

from voice_agent.protocol.sessions import Message, SessionStatus


class ErrorCode(StrEnum):
    """`code` of the `error` events the agent itself sends; providers add `<stage>_<kind>` codes."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_METRIC = "invalid_metric"
    MISSING_FIELD = "missing_field"
    FRAME_TOO_LARGE = "frame_too_large"
    INVALID_SDP = "invalid_sdp"
    INVALID_CANDIDATE = "invalid_candidate"
    TOO_MANY_CANDIDATES = "too_many_candidates"
    UNEXPECTED_ANSWER = "unexpected_answer"
    RATE_LIMITED = "rate_limited"
    ICE_FAILED = "ice_failed"
    MEDIA_STALLED = "media_stalled"
    UNKNOWN_SESSION = "unknown_session"
    TOO_MANY_SOCKETS = "too_many_sockets"
    CAPACITY = "capacity"
    REPLACED = "replaced"
    SESSION_MOVED = "session_moved"
    OWNER_GONE = "owner_gone"
    RELAY_LOST = "relay_lost"
    GOING_AWAY = "going_away"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes of the signaling socket: one meaning each, and one next step (CLOSE_ACTIONS)."""

    ENDED = 1000
    # Sent by the WebSocket server itself, never by the agent's code: listed because clients see them.
    INVALID_UTF8 = 1007
    QUEUE_FULL = 1008
    TOO_BIG = 1009
    SERVER_ERROR = 1011
    # The session is intact, this socket cannot carry it any more (the call was suspended or moved,
    # its agent is going away or gone, the relay to it broke): reconnect now with the same id.
    RECONNECT = 1012
    TRY_AGAIN = 1013
    UNKNOWN_SESSION = 4404
    REPLACED = 4409


class CloseAction(StrEnum):
    """What a client does after a close; docs/api.md ("Close codes") is the table in prose."""

    STOP = "stop"  # the session is over for this client: do not reconnect
    RECONNECT = "reconnect"  # reconnect at once with the same session id: it resumes, history kept
    RETRY_LATER = "retry_later"  # reconnect with the same session id after a backoff
    NEW_SESSION = "new_session"  # the session is gone: create a new one


CLOSE_ACTIONS: dict[CloseCode, CloseAction] = {
    CloseCode.ENDED: CloseAction.STOP,
    CloseCode.INVALID_UTF8: CloseAction.RECONNECT,
    CloseCode.QUEUE_FULL: CloseAction.RECONNECT,
    CloseCode.TOO_BIG: CloseAction.RECONNECT,
    CloseCode.SERVER_ERROR: CloseAction.RECONNECT,
    CloseCode.RECONNECT: CloseAction.RECONNECT,
    CloseCode.TRY_AGAIN: CloseAction.RETRY_LATER,
    CloseCode.UNKNOWN_SESSION: CloseAction.NEW_SESSION,
    CloseCode.REPLACED: CloseAction.STOP,
}


def close_action(code: int | None) -> CloseAction:
    """The next step after a close; a code not in the table (1006: the connection dropped without a
    close frame, 1001 from a proxy) is a network failure: back off and reconnect."""
    try:
        return CLOSE_ACTIONS[CloseCode(code or 0)]
    except ValueError:
        return CloseAction.RETRY_LATER


# Both ends send audio all the time (silence between words and replies), so media that is up yet
# silent this long has stalled: each side then tells the other, or recovers (docs/api.md, `media_stalled`).
MEDIA_STALL_S = 1.5

MAX_TEXT_CHARS = 2000
MAX_CANDIDATE_CHARS = 1024
# A heard voice-to-voice over this is not a latency but a broken measurement (a tab in the background).
MAX_HEARD_MS = 30_000
# More audio than this unplayed in a client is not a playout buffer; the agent keeps no more to replay.
MAX_UNHEARD_MS = 1_000
MAX_SDP_BYTES = 32 * 1024
MAX_SDP_CANDIDATES = 64
# DTLS fails much later and much less clearly than this check when a fingerprint is mangled.
_FINGERPRINT = re.compile(
    r"^a=fingerprint:(sha-1|sha-224|sha-256|sha-384|sha-512) [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}$"
)
_PROVIDER_ERROR = r"^(stt|llm|tts)_[a-z_]+$"


class SignalingError(ValueError):
    """Bad signaling input; `code` is sent to the client in an error event.

    A ValueError so that a model's validator can raise it and pydantic hands it back unchanged
    (`_refusal`), code and message intact.
    """

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def event(self) -> dict[str, Any]:
        return error_event(self.code, self.message)


OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE | re.MULTILINE)


def opus_payload_types(sdp: str) -> set[int]:
    """Payload types the SDP maps to Opus."""
    return {int(pt) for pt in OPUS_RTPMAP.findall(sdp)}


def check_offer_sdp(sdp: str) -> str:
    """Reject what aiortc would choke on, or what no browser sends, before it reaches aiortc."""
    if not sdp.strip():
        raise SignalingError(ErrorCode.INVALID_SDP, "sdp must be a non-empty string")
    if len(sdp) > MAX_SDP_BYTES:
        raise SignalingError(ErrorCode.INVALID_SDP, f"sdp larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0"):
        raise SignalingError(ErrorCode.INVALID_SDP, "sdp must start with v=0")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise SignalingError(ErrorCode.INVALID_SDP, "offer has no audio m-line")
    if not opus_payload_types(sdp):
        raise SignalingError(ErrorCode.INVALID_SDP, "offer has no Opus codec (a=rtpmap:<pt> opus/48000/2)")
    lines = sdp.replace("\r\n", "\n").split("\n")
    fingerprints = [ln for ln in lines if ln.startswith("a=fingerprint:")]
    if not fingerprints or not all(_FINGERPRINT.match(ln) for ln in fingerprints):
        raise SignalingError(ErrorCode.INVALID_SDP, "offer needs a well-formed DTLS fingerprint")
    if not any(ln.startswith("a=ice-ufrag:") for ln in lines) or not any(
        ln.startswith("a=ice-pwd:") for ln in lines
    ):
        raise SignalingError(ErrorCode.INVALID_SDP, "offer needs ICE credentials (ice-ufrag, ice-pwd)")
    if sdp.count("a=candidate:") > MAX_SDP_CANDIDATES:
        raise SignalingError(ErrorCode.INVALID_SDP, f"more than {MAX_SDP_CANDIDATES} candidates in sdp")
    return sdp


def _type_required(schema: dict[str, Any]) -> None:
    """An event's `type` has a default (so the agent need not repeat it) but is always on the wire."""
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=_type_required)

    def wire(self) -> dict[str, Any]:
        """The JSON object as sent (python mode: a ping's `ts` may nest deeper than JSON mode goes)."""
        return self.model_dump()


# --- client -> agent ----------------------------------------------------------------------------


class _ClientMessage(_Wire):
    model_config = ConfigDict(strict=True)
    # The code for a field of the right name but the wrong value.
    invalid: ClassVar[ErrorCode] = ErrorCode.INVALID_MESSAGE


class Offer(_ClientMessage):
    """Starts media or replaces it: first connect, ICE restart, renegotiation and resume alike."""

    invalid = ErrorCode.INVALID_SDP
    type: Literal["offer"]
    sdp: str

    @field_validator("sdp")
    @classmethod
    def _usable(cls, sdp: str) -> str:
        return check_offer_sdp(sdp)


class Answer(_ClientMessage):
    """Reserved for agent-initiated renegotiation; the agent never offers, so any answer is unexpected."""

    invalid = ErrorCode.UNEXPECTED_ANSWER
    type: Literal["answer"]
    sdp: str


class IceCandidate(_ClientMessage):
    """A trickled candidate; `candidate` null or "" ends the candidates."""

    invalid = ErrorCode.INVALID_CANDIDATE
    type: Literal["ice-candidate"]
    candidate: str | None = Field(max_length=MAX_CANDIDATE_CHARS)
    sdpMid: str | None = None
    sdpMLineIndex: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _end_of_candidates(cls, data: Any) -> Any:
        # Only a real candidate's fields were ever checked: the end marker stays valid whatever it carries.
        if isinstance(data, Mapping) and "candidate" in data and data["candidate"] in (None, ""):
            return {"type": data.get("type"), "candidate": None}
        return data

    @model_validator(mode="after")
    def _parseable(self) -> IceCandidate:
        if self.candidate is not None:
            if self.sdpMid is None and self.sdpMLineIndex is None:
                raise SignalingError(ErrorCode.INVALID_CANDIDATE, "sdpMid or sdpMLineIndex is required")
            self.rtc()
        return self

    def rtc(self) -> RTCIceCandidate | None:
        """aiortc's candidate, None for end-of-candidates."""
        if self.candidate is None:
            return None
        try:
            candidate = candidate_from_sdp(self.candidate.removeprefix("candidate:"))
        except (AssertionError, ValueError, IndexError, KeyError) as exc:
            message = f"unparseable candidate: {exc!s}"[:200]
            raise SignalingError(ErrorCode.INVALID_CANDIDATE, message) from None
        candidate.sdpMid = self.sdpMid
        candidate.sdpMLineIndex = self.sdpMLineIndex
        return candidate


class Text(_ClientMessage):
    """Typed input: it enters the pipeline where a final transcript would (stripped)."""

    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise SignalingError(ErrorCode.INVALID_MESSAGE, "text must be a non-empty string")
        return text.strip()


class Interrupt(_ClientMessage):
    """Stop the agent's current reply: the same path as barge-in by voice."""

    type: Literal["interrupt"]


class Ping(_ClientMessage):
    """Answered by a `pong` carrying the same `ts`, whatever JSON value it is."""

    type: Literal["ping"]
    ts: Any = None


class ClientMetrics(_ClientMessage):
    """One reply as the user heard it, timed in the page: the end of the user's speech on the mic
    to the first audible block of the reply, on one audio clock. Only the client sees the last
    stretch (network, jitter buffer, playout), so the agent's own figure stops short of it.
    One report per reply the agent started (interrupted ones included); more, or an impossible
    value, is refused and counted, never stored (docs/api.md, "Client metrics")."""

    invalid = ErrorCode.INVALID_METRIC
    type: Literal["client_metrics"]
    voice_to_voice_ms: float = Field(gt=0, le=MAX_HEARD_MS, allow_inf_nan=False)


class Held(_ClientMessage):
    """The answer to a `playback` event `held`: the client went silent, and `unheard_ms` of the reply
    it had already received or was still receiving (its playout buffer and output latency) was never
    played. The agent plays on from what was heard, not from what it had sent, when it resumes."""

    type: Literal["held"]
    turn: int = Field(ge=0)
    unheard_ms: float = Field(ge=0, le=MAX_UNHEARD_MS, allow_inf_nan=False)


class End(_ClientMessage):
    """End the session: the record is removed and the socket closes with 1000."""

    type: Literal["end"]


AnyClientMessage = Offer | Answer | IceCandidate | Text | Interrupt | Ping | ClientMetrics | Held | End
ClientMessage = Annotated[AnyClientMessage, Field(discriminator="type")]
_CLIENT = TypeAdapter[AnyClientMessage](ClientMessage)
_MODELS: dict[str, type[_ClientMessage]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(AnyClientMessage)
}


# --- agent -> client ----------------------------------------------------------------------------


class SessionSnapshot(BaseModel):
    """The session as a (re)connecting client needs it: `history` to show, `ice_servers` to use."""

    id: str
    status: SessionStatus
    pool: str
    owner: str
    expires_at: str = Field(description="ISO 8601")
    history: list[Message]
    ice_servers: list[dict[str, Any]]
    # {} when this agent holds no media for the session: the client must send an offer.
    peer_connections: dict[str, Any]


class SessionEvent(_Wire):
    type: Literal["session"] = "session"
    session: SessionSnapshot


class AnswerEvent(_Wire):
    type: Literal["answer"] = "answer"
    sdp: str


class OfferEvent(_Wire):
    """Reserved for agent-initiated renegotiation (the agent does not send it yet)."""

    type: Literal["offer"] = "offer"
    sdp: str


class IceCandidateEvent(_Wire):
    """One of the agent's candidates; all three null ends them."""

    type: Literal["ice-candidate"] = "ice-candidate"
    candidate: str | None
    sdpMid: str | None
    sdpMLineIndex: int | None


ProcessingStatus = Literal["idle", "listening", "processing", "speaking"]


class StatusEvent(_Wire):
    type: Literal["status"] = "status"
    processing: ProcessingStatus


class TranscriptEvent(_Wire):
    type: Literal["transcript"] = "transcript"
    text: str
    final: bool


def _absent(value: object) -> bool:
    return value is None


class AiResponseEvent(_Wire):
    type: Literal["ai_response"] = "ai_response"
    text: str
    final: bool
    provider: str | None = Field(default=None, exclude_if=_absent, description="the LLM that answered")


class AiInterruptedEvent(_Wire):
    """The reply was cut short (barge-in, interrupt): `text` is what of it was played, as kept in history."""

    type: Literal["ai_interrupted"] = "ai_interrupted"
    text: str


PlaybackState = Literal["held", "resumed", "cut"]


class PlaybackEvent(_Wire):
    """The reply's audio at the agent, sent the moment it changes, so the client silences what it
    already buffered instead of playing it over the user: `held` (user sound that may be only a
    cough: silence at once, answer with `held`), `resumed` (it was not an interruption: play again),
    `cut` (the reply is over: stay silent until the next one speaks)."""

    type: Literal["playback"] = "playback"
    state: PlaybackState
    turn: int


class TurnMetrics(BaseModel):
    stt_ms: float | None
    llm_first_token_ms: float | None
    tts_first_audio_ms: float | None
    voice_to_voice_ms: float | None
    providers: dict[str, str] | None = Field(
        default=None, exclude_if=_absent, description="which provider answered each stage"
    )


class MetricsEvent(_Wire):
    type: Literal["metrics"] = "metrics"
    turn: TurnMetrics


class ErrorEvent(_Wire):
    type: Literal["error"] = "error"
    code: ErrorCode | Annotated[str, Field(pattern=_PROVIDER_ERROR, description="a provider failed")]
    message: str


class PongEvent(_Wire):
    type: Literal["pong"] = "pong"
    ts: Any = None


AnyServerEvent = (
    SessionEvent
    | AnswerEvent
    | OfferEvent
    | IceCandidateEvent
    | StatusEvent
    | TranscriptEvent
    | AiResponseEvent
    | AiInterruptedEvent
    | PlaybackEvent
    | MetricsEvent
    | ErrorEvent
    | PongEvent
)
ServerEvent = Annotated[AnyServerEvent, Field(discriminator="type")]
_SERVER = TypeAdapter[AnyServerEvent](ServerEvent)


def error_event(code: ErrorCode, message: str) -> dict[str, Any]:
    return ErrorEvent(code=code, message=message).wire()


def parse_event(event: Mapping[str, Any]) -> AnyServerEvent:
    """An agent event as a client reads it (the test client, the unit tests)."""
    return _SERVER.validate_python(event)


# --- parsing ------------------------------------------------------------------------------------


def parse_frame(raw: str | bytes | None, max_bytes: int) -> AnyClientMessage:
    """One WebSocket frame from a client -> its message; SignalingError says what is wrong with it."""
    if raw is None:
        raise SignalingError(ErrorCode.INVALID_MESSAGE, "empty frame")
    if isinstance(raw, bytes):
        raise SignalingError(ErrorCode.INVALID_MESSAGE, "binary frames are not supported; send JSON text")
    if len(raw) > max_bytes:
        raise SignalingError(ErrorCode.FRAME_TOO_LARGE, f"frame larger than {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise SignalingError(ErrorCode.INVALID_JSON, "frame is not valid JSON") from None
    return parse_message(data)


def parse_message(data: object) -> AnyClientMessage:
    """A decoded JSON value -> a client message (also what a relayed message is parsed with)."""
    if not isinstance(data, Mapping):
        raise SignalingError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise SignalingError(ErrorCode.INVALID_MESSAGE, "message needs a string 'type'")
    model = _MODELS.get(kind)
    if model is None:
        raise SignalingError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}")
    try:
        return _CLIENT.validate_python(data)
    except ValidationError as exc:
        raise _refusal(kind, model, exc) from None


def _refusal(kind: str, model: type[_ClientMessage], exc: ValidationError) -> SignalingError:
    """The client-facing error for a failed validation: a missing field first, then our own checks'."""
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "missing":
            return SignalingError(ErrorCode.MISSING_FIELD, f"'{kind}' needs field '{err['loc'][-1]}'")
    for err in errors:
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, SignalingError):
            return cause
    err = errors[0]
    field = ".".join(str(part) for part in err["loc"][1:])
    return SignalingError(model.invalid, f"'{kind}' field '{field}': {err['msg']}"[:200])


def parse_candidate(msg: Mapping[str, Any] | IceCandidate) -> RTCIceCandidate | None:
    """An `ice-candidate` message, typed or as received, -> aiortc's candidate (None: end of candidates)."""
    if not isinstance(msg, IceCandidate):
        parsed = parse_message({**msg, "type": "ice-candidate"})
        assert isinstance(parsed, IceCandidate)
        msg = parsed
    return msg.rtc()


# --- schema -------------------------------------------------------------------------------------


class _Untitled(GenerateJsonSchema):
    """Without pydantic's per-field titles ("Sdpmid"): they say nothing the field name does not."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _close_actions_schema() -> dict[str, Any]:
    """The close table as a type: generated clients cannot hold a table that differs from this one."""
    return {
        "type": "object",
        "description": "What a client does after each close code of the signaling socket (docs/api.md).",
        "properties": {str(int(c)): {"const": a.value} for c, a in CLOSE_ACTIONS.items()},
        "required": [str(int(c)) for c in CLOSE_ACTIONS],
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """Every message and event as one JSON Schema (2020-12); the web client's types come from it."""
    defs: dict[str, Any] = {}
    roots: dict[str, TypeAdapter[Any]] = {
        "ClientMessage": _CLIENT,
        "ServerEvent": _SERVER,
        "ErrorCode": TypeAdapter(ErrorCode),
        "CloseCode": TypeAdapter(CloseCode),
        "CloseAction": TypeAdapter(CloseAction),
    }
    for name, adapter in roots.items():
        schema = adapter.json_schema(ref_template="#/$defs/{model}", schema_generator=_Untitled)
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    defs["CloseActions"] = _close_actions_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voicepool signaling protocol",
        "description": "Messages on WS /ws/v2/{session_id}: ClientMessage from the client, "
        "ServerEvent from the agent; see docs/api.md.",
        "$defs": dict(sorted(defs.items())),
    }
