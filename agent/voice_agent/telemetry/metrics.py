"""Prometheus metrics, every one listed in docs/api.md; the five `webrtc_*` names are a fixed contract."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBSOCKET_CONNECTIONS = Gauge("webrtc_websocket_connections_total", "Open signaling WebSocket connections")
ACTIVE_SESSIONS = Gauge("webrtc_active_sessions_total", "Active sessions on this agent")
SESSION_CAPACITY = Gauge("voice_session_capacity", "Sessions this agent accepts (VOICE_MAX_SESSIONS)")
PEER_CONNECTIONS = Gauge("webrtc_peer_connections_total", "Open WebRTC peer connections")
EVENT_LOOP_TASKS = Gauge(
    "voice_event_loop_tasks", "asyncio tasks alive in the event loop (back to the idle level after calls)"
)
ICE_SELECTED_PAIRS = Counter(
    "webrtc_ice_selected_pairs_total",
    "Candidate pairs ICE selected, by where each end's address lives (loopback, private, public)",
    ["local", "remote", "type"],
)
SIGNALING_MESSAGES = Counter("webrtc_signaling_messages_total", "Signaling messages received", ["type"])
SIGNALING_LATENCY = Histogram(
    "webrtc_signaling_latency_seconds",
    "Time to handle one signaling message (offer -> answer dominates)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
STT_LATENCY = Histogram(
    "voice_stt_final_seconds", "End of user speech -> final transcript", buckets=_LATENCY_BUCKETS
)
LLM_FIRST_TOKEN = Histogram(
    "voice_llm_first_token_seconds", "Final transcript -> first LLM token", buckets=_LATENCY_BUCKETS
)
TTS_FIRST_AUDIO = Histogram(
    "voice_tts_first_audio_seconds", "Sentence sent to TTS -> first audio chunk", buckets=_LATENCY_BUCKETS
)
VOICE_TO_VOICE = Histogram(
    "voice_voice_to_voice_seconds",
    "End of user speech -> first reply audio frame sent (agent side)",
    buckets=_LATENCY_BUCKETS,
)
CLIENT_VOICE_TO_VOICE = Histogram(
    "voice_client_voice_to_voice_seconds",
    "End of user speech -> first audible reply, timed in the client's page and reported by it",
    ["pool"],
    buckets=_LATENCY_BUCKETS,
)
TURNS = Counter("voice_turns_total", "Completed or interrupted turns", ["outcome"])
PREEMPTIONS = Counter(
    "voice_preemptive_drafts_total", "Replies drafted during the end-of-turn silence, by fate", ["outcome"]
)
BARGE_INS = Counter("voice_barge_ins_total", "User speech that interrupted the agent")
# End of turn (docs/architecture.md, "End of turn"); `detector` is adaptive or fixed.
TURN_END_SILENCE = Histogram(
    "voice_turn_end_silence_seconds",
    "Silence waited from the end of the user's last voiced audio to the turn being taken",
    ["detector"],
    buckets=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.6, 2.0, 3.0, 5.0),
)
TURN_DECISIONS = Counter(
    "voice_turn_decisions_total",
    "End-of-turn decisions: complete, incomplete, timeout (the longest silence ran out), fallback "
    "(no decision possible: the fixed silence), provider (the STT provider endpointed)",
    ["detector", "outcome"],
)
TURN_DECISION_TIME = Histogram(
    "voice_turn_decision_seconds",
    "Time spent on each end-of-turn decision (getting the words and judging them)",
    ["detector"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
INTERRUPTIONS = Counter(
    "voice_interruptions_total",
    "User sound during a reply: real (cut it), false (dropped, never a turn), resumed (held, then played on)",
    ["kind"],
)
ERRORS = Counter("voice_errors_total", "Errors by type", ["type"])
SESSION_DURATION = Histogram(
    "voice_session_duration_seconds",
    "Lifetime of ended sessions",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
INBOUND_CONCEALED = Counter(
    "voice_inbound_concealed_frames_total",
    "Inbound frames lost on the network and repaired (Opus in-band FEC, else concealment)",
)
INBOUND_REBUILT = Counter(
    "voice_inbound_rebuilt_frames_total",
    "Of the inbound frames repaired: rebuilt whole from the next packet's redundant copy (RED)",
)
OPUS_FALLBACKS = Counter(
    "voice_opus_fallbacks_total",
    "Calls whose inbound audio aiortc decoded because libopus could not be loaded (no FEC repair)",
)
INBOUND_OVERFLOW = Counter(
    "voice_inbound_overflow_frames_total",
    "Inbound 20 ms frames dropped because the pipeline fell more than 5 s behind",
)
OUTPUT_FRAMES = Counter("voice_output_frames_total", "Audio frames sent to peers", ["kind"])
OUTPUT_STALLED = Counter(
    "voice_output_stalled_seconds_total",
    "Time the outbound audio fell behind its 20 ms clock by more than a frame (a stall, summed once)",
)
OUTPUT_LATE_FRAMES = Counter(
    "voice_output_late_frames_total",
    "Output frames produced more than one 20 ms frame period after their slot",
)

# Cloud providers (label values are provider and stage names and error kinds, never request data).
PROVIDER_LATENCY = Histogram(
    "voice_provider_request_seconds",
    "Provider request latency: phase=first (request -> first result) and phase=total",
    ["provider", "stage", "phase"],
    buckets=_LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter("voice_provider_errors_total", "Provider failures", ["provider", "stage", "type"])
PROVIDER_IN_FLIGHT = Gauge(
    "voice_provider_in_flight_requests", "Open provider requests", ["provider", "stage"]
)
PROVIDER_RETRIES = Counter("voice_provider_retries_total", "Provider requests retried", ["provider", "stage"])
PROVIDER_FALLBACKS = Counter(
    "voice_provider_fallbacks_total", "Requests answered by the offline fallback", ["stage", "provider"]
)

# Liveness (docs/reliability.md, "Liveness under load").
EVENT_LOOP_LAG = Histogram(
    "voice_event_loop_lag_seconds",
    "How much later than asked the event loop ran a timer: what every task waited for the loop",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
MEDIA_STALLS = Counter(
    "voice_media_stalls_total",
    "Calls whose client's audio stopped arriving while media and signaling were up",
)

# Drain by migration (docs/deploy.md, "Rolling a pool").
MIGRATIONS = Counter(
    "voice_migrations_total",
    "Calls a draining agent moved (moved), could not move for want of room elsewhere (no_room, once per "
    "call), or failed to move (failed)",
    ["outcome"],
)
MIGRATION_GAP = Histogram(
    "voice_migration_gap_seconds",
    "From a draining agent moving a call to its media up on the agent that resumed it (observed there)",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0),
)
