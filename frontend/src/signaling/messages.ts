/**
 * Signaling messages of `WS /ws/v2/{session_id}` (docs/api.md, "Signaling").
 *
 * The shapes are generated from the agent's protocol models (`protocol.d.ts`, see
 * scripts/signaling.mjs), so an agent change to a message the page reads or sends fails
 * `npm run typecheck`. The agent is still a separate process that may run another version than
 * this page, so every inbound frame is validated here and anything malformed is reported instead of
 * trusted.
 */
import type { components } from './protocol';

type Schemas = components['schemas'];

export type ClientMessage = Schemas['ClientMessage'];
export type AgentMessage = Schemas['ServerEvent'];
export type ProcessingPhase = Schemas['StatusEvent']['processing'];
export type TurnMetrics = Schemas['TurnMetrics'];
export type SessionSnapshot = Schemas['SessionSnapshot'];
export type StoredMessage = Schemas['Message'];
export type ErrorCode = Schemas['ErrorCode'];
export type CloseCode = Schemas['CloseCode'];
export type CloseAction = Schemas['CloseAction'];
/** One entry per close code: the agent's table (docs/api.md, "Close codes") as a type. */
export type CloseActions = Schemas['CloseActions'];

/**
 * What to do after the signaling socket closed. Typed by the agent's table, so a code added or
 * changed there fails `npm run typecheck` until this copy says the same.
 */
export const CLOSE_ACTIONS: CloseActions = {
  1000: 'stop',
  1007: 'reconnect',
  1008: 'reconnect',
  1009: 'reconnect',
  1011: 'reconnect',
  1012: 'reconnect',
  1013: 'retry_later',
  4404: 'new_session',
  4409: 'stop',
};

/** A code not in the table (1006: the connection dropped without a close frame) is a network failure. */
export function closeAction(code: number): CloseAction {
  const actions: Partial<Record<number, CloseAction>> = CLOSE_ACTIONS;
  return actions[code] ?? 'retry_later';
}

export type ParseResult = { ok: true; message: AgentMessage } | { ok: false; reason: string };

const PHASES: readonly ProcessingPhase[] = ['idle', 'listening', 'processing', 'speaking'];
const PLAYBACK_STATES: readonly Schemas['PlaybackEvent']['state'][] = ['held', 'resumed', 'cut'];
const SESSION_STATUSES: readonly SessionSnapshot['status'][] = ['created', 'connected', 'disconnected', 'ended'];
const ROLES: readonly StoredMessage['role'][] = ['system', 'user', 'assistant'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalNumber(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function oneOf<T>(allowed: readonly T[], value: unknown): T | null {
  return allowed.includes(value as T) ? (value as T) : null;
}

function parseTurn(value: unknown): TurnMetrics | null {
  if (!isRecord(value)) return null;
  return {
    stt_ms: optionalNumber(value.stt_ms),
    llm_first_token_ms: optionalNumber(value.llm_first_token_ms),
    tts_first_audio_ms: optionalNumber(value.tts_first_audio_ms),
    voice_to_voice_ms: optionalNumber(value.voice_to_voice_ms),
  };
}

function parseStored(entry: unknown): StoredMessage | null {
  if (!isRecord(entry)) return null;
  const role = oneOf(ROLES, entry.role);
  const content = optionalString(entry.content);
  return role && content !== null ? { role, content, interrupted: entry.interrupted === true } : null;
}

/** The session of a `session` event; what is missing or malformed gets an empty value. */
function parseSession(value: unknown): SessionSnapshot | null {
  if (!isRecord(value)) return null;
  const history = Array.isArray(value.history) ? value.history : [];
  return {
    id: optionalString(value.id) ?? '',
    // The agent sends the session when a socket attaches, which makes it connected.
    status: oneOf(SESSION_STATUSES, value.status) ?? 'connected',
    pool: optionalString(value.pool) ?? '',
    owner: optionalString(value.owner) ?? '',
    expires_at: optionalString(value.expires_at) ?? '',
    history: history.map(parseStored).filter((m): m is StoredMessage => m !== null),
    ice_servers: Array.isArray(value.ice_servers) ? value.ice_servers.filter(isRecord) : [],
    peer_connections: isRecord(value.peer_connections) ? value.peer_connections : {},
  };
}

/** Validates one text frame from the agent; never throws. */
export function parseAgentMessage(raw: unknown): ParseResult {
  if (typeof raw !== 'string') return { ok: false, reason: 'binary frame' };
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (!isRecord(data) || typeof data.type !== 'string') return { ok: false, reason: 'no type' };
  const bad = (what: string): ParseResult => ({ ok: false, reason: `${String(data.type)}: ${what}` });
  switch (data.type) {
    case 'session': {
      const session = parseSession(data.session);
      return session ? { ok: true, message: { type: 'session', session } } : bad('session missing');
    }
    case 'answer':
    case 'offer':
      return typeof data.sdp === 'string' && data.sdp.length > 0
        ? { ok: true, message: { type: data.type, sdp: data.sdp } }
        : bad('sdp missing');
    case 'ice-candidate':
      return {
        ok: true,
        message: {
          type: 'ice-candidate',
          candidate: optionalString(data.candidate) || null,
          sdpMid: optionalString(data.sdpMid),
          sdpMLineIndex: optionalNumber(data.sdpMLineIndex),
        },
      };
    case 'status': {
      const processing = oneOf(PHASES, data.processing);
      return processing ? { ok: true, message: { type: 'status', processing } } : bad('unknown processing state');
    }
    case 'transcript':
    case 'ai_response':
      return typeof data.text === 'string'
        ? { ok: true, message: { type: data.type, text: data.text, final: data.final === true } }
        : bad('text missing');
    case 'ai_interrupted':
      return typeof data.text === 'string'
        ? { ok: true, message: { type: 'ai_interrupted', text: data.text } }
        : bad('text missing');
    case 'playback': {
      const state = oneOf(PLAYBACK_STATES, data.state);
      const turn = optionalNumber(data.turn);
      return state && turn !== null ? { ok: true, message: { type: 'playback', state, turn } } : bad('state or turn missing');
    }
    case 'metrics': {
      const turn = parseTurn(data.turn);
      return turn ? { ok: true, message: { type: 'metrics', turn } } : bad('turn missing');
    }
    case 'error':
      return {
        ok: true,
        message: {
          type: 'error',
          code: optionalString(data.code) ?? 'error',
          message: optionalString(data.message) ?? 'The agent reported an error.',
        },
      };
    case 'pong':
      return { ok: true, message: { type: 'pong' } };
    default:
      return { ok: false, reason: `unknown type ${data.type}` };
  }
}

export function encodeClientMessage(message: ClientMessage): string {
  return JSON.stringify(message);
}
