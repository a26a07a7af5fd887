/**
 * Signaling message shapes of `WS /ws/v2/{session_id}` (DESIGN.md, "Signaling WebSocket").
 *
 * The agent is a separate process that may be a different version than this page, so every inbound
 * frame is validated here and anything malformed is reported instead of trusted.
 */

export type ProcessingPhase = 'idle' | 'listening' | 'processing' | 'speaking';

export interface IceCandidateFields {
  candidate: string | null;
  sdpMid: string | null;
  sdpMLineIndex: number | null;
}

export interface TurnMetrics {
  stt_ms: number | null;
  llm_first_token_ms: number | null;
  tts_first_audio_ms: number | null;
  voice_to_voice_ms: number | null;
}

export type ClientMessage =
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | ({ type: 'ice-candidate' } & IceCandidateFields)
  | { type: 'text'; text: string }
  | { type: 'interrupt' }
  | { type: 'ping' }
  | { type: 'end' };

export type AgentMessage =
  | { type: 'session'; session: Record<string, unknown> }
  | { type: 'answer'; sdp: string }
  | { type: 'offer'; sdp: string }
  | ({ type: 'ice-candidate' } & IceCandidateFields)
  | { type: 'status'; processing: ProcessingPhase }
  | { type: 'transcript'; text: string; final: boolean }
  | { type: 'ai_response'; text: string; final: boolean }
  | { type: 'metrics'; turn: TurnMetrics }
  | { type: 'error'; code: string; message: string }
  | { type: 'pong' };

export type ParseResult = { ok: true; message: AgentMessage } | { ok: false; reason: string };

const PHASES: readonly ProcessingPhase[] = ['idle', 'listening', 'processing', 'speaking'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalNumber(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
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
    case 'session':
      return isRecord(data.session)
        ? { ok: true, message: { type: 'session', session: data.session } }
        : bad('session missing');
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
    case 'status':
      return PHASES.includes(data.processing as ProcessingPhase)
        ? { ok: true, message: { type: 'status', processing: data.processing as ProcessingPhase } }
        : bad('unknown processing state');
    case 'transcript':
    case 'ai_response':
      return typeof data.text === 'string'
        ? { ok: true, message: { type: data.type, text: data.text, final: data.final === true } }
        : bad('text missing');
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
