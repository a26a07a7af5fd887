/**
 * The voice agent client's state machine, as a pure reducer.
 *
 * Everything with side effects (HTTP, WebSocket, RTCPeerConnection, timers) lives in the session
 * controller; it only reports what happened as actions. Keeping the transitions here makes them
 * testable without a browser and keeps the UI a plain function of this state.
 */
import type { AgentMessage, TurnMetrics } from '../signaling/messages';

export type ConnectionStatus = 'disconnected' | 'connecting' | 'connected' | 'error';
export type ProcessingStatus = 'idle' | 'listening' | 'processing' | 'speaking' | 'error';
export type SignalingState = 'idle' | 'opening' | 'open' | 'closed';
/** `stalled`: media is up but the agent's audio stopped arriving (the controller recovers it). */
export type MediaState = 'none' | 'connecting' | 'connected' | 'stalled' | 'restarting' | 'failed';

/** Why the conversation stopped or is degraded; the page chooses its wording and actions from this. */
export type VoiceErrorCode =
  | 'mic-permission'
  | 'mic-unavailable'
  | 'unsupported'
  | 'agent-unreachable'
  | 'agent-busy'
  | 'agent-not-started'
  | 'session-failed'
  | 'signaling-lost'
  | 'media-failed'
  | 'session-taken'
  | 'agent-error';

export interface ConversationTurn {
  id: number;
  role: 'user' | 'agent';
  text: string;
  /** The agent's reply was cut short by the user speaking (barge-in) or by a reconnect. */
  interrupted?: boolean;
}

/** The dashboard's VoiceAgentState (docs/frontend.md), plus what the dashboard needs to explain recovery and history. */
export interface VoiceAgentState {
  connectionStatus: ConnectionStatus;
  processingStatus: ProcessingStatus;
  sessionId: string | null;
  /** Last final user utterance. */
  transcript: string;
  /** Hypothesis for the utterance in progress; replaced on each interim event. */
  interimTranscript: string;
  /** The agent's current (possibly still streaming) reply. */
  aiResponse: string | null;
  error: string | null;
  version: string;

  /** The user wants a conversation: set by start, cleared by stop or a fatal error. */
  active: boolean;
  signaling: SignalingState;
  media: MediaState;
  errorCode: VoiceErrorCode | null;
  /** A fatal error ends the conversation; a non-fatal one is shown while the session goes on. */
  errorFatal: boolean;
  /** Seconds the agent asked us to wait (503 Retry-After), if any. */
  retryAfterS: number | null;
  reconnect: { attempt: number; delayMs: number } | null;
  /** The pool had no agent up (scaled to zero) and one is starting: the session request is retried. */
  starting: { attempt: number; delayMs: number } | null;
  /** Calm, informational message, e.g. that a new session replaced a lost one. */
  notice: string | null;
  aiResponseFinal: boolean;
  history: ConversationTurn[];
  turnMetrics: TurnMetrics[];
  /**
   * Voice to voice of each reply as heard in this page, in ms (src/audio/heard.ts): the end of the
   * user's speech on the mic track to the reply's first audible block; interrupted replies too.
   */
  heardMs: number[];
  nextTurnId: number;
  /** Times the agent's audio stopped while the call was up (docs/reliability.md, "Liveness under load"). */
  mediaStalls: number;
}

export type VoiceAgentAction =
  | { type: 'start' }
  | { type: 'stop' }
  | { type: 'ended' }
  | { type: 'session-ready'; sessionId: string; replaced: boolean }
  | { type: 'signaling'; state: SignalingState }
  | { type: 'reconnect-scheduled'; attempt: number; delayMs: number }
  | { type: 'agent-starting'; attempt: number; delayMs: number }
  | { type: 'media'; state: MediaState }
  | { type: 'agent'; message: AgentMessage }
  | { type: 'protocol-error'; reason: string }
  | { type: 'fail'; code: VoiceErrorCode; message: string; retryAfterS?: number | null }
  | { type: 'local-text'; text: string }
  | { type: 'heard'; ms: number }
  | { type: 'dismiss' };

export const CLIENT_VERSION = 'v2';
export const MAX_TURN_METRICS = 20;

export const initialVoiceAgentState: VoiceAgentState = {
  connectionStatus: 'disconnected',
  processingStatus: 'idle',
  sessionId: null,
  transcript: '',
  interimTranscript: '',
  aiResponse: null,
  error: null,
  version: CLIENT_VERSION,
  active: false,
  signaling: 'idle',
  media: 'none',
  errorCode: null,
  errorFatal: false,
  retryAfterS: null,
  reconnect: null,
  starting: null,
  notice: null,
  aiResponseFinal: true,
  history: [],
  turnMetrics: [],
  heardMs: [],
  nextTurnId: 1,
  mediaStalls: 0,
};

export const SESSION_REPLACED_NOTICE =
  'The agent lost the previous session (it restarted or the session expired), so a new session was started. ' +
  'Earlier turns stay on screen but the agent no longer remembers them.';

export const SESSION_ENDED_NOTICE = 'The agent ended this conversation.';

/**
 * Streaming text may arrive as growing snapshots ("Hel", "Hello") or as deltas ("Hel", "lo");
 * a snapshot always starts with what we already have, so that decides which one it is.
 */
export function mergeStreamingText(previous: string, incoming: string): string {
  if (previous === '') return incoming;
  if (incoming.startsWith(previous)) return incoming;
  return previous + incoming;
}

function deriveConnection(state: VoiceAgentState): ConnectionStatus {
  if (state.errorFatal) return 'error';
  if (!state.active) return 'disconnected';
  if (state.signaling === 'open' && state.media === 'connected') return 'connected';
  return 'connecting';
}

function deriveProcessing(state: VoiceAgentState, next: ProcessingStatus): ProcessingStatus {
  if (state.errorFatal) return 'error';
  if (!state.active) return 'idle';
  return next;
}

function finish(state: VoiceAgentState, processing: ProcessingStatus = state.processingStatus): VoiceAgentState {
  return {
    ...state,
    connectionStatus: deriveConnection(state),
    processingStatus: deriveProcessing(state, processing === 'error' ? 'idle' : processing),
  };
}

/** Moves an unfinished agent reply into the history, marked as cut short. */
function closeOpenReply(state: VoiceAgentState): VoiceAgentState {
  if (state.aiResponseFinal || !state.aiResponse) return { ...state, aiResponseFinal: true };
  return {
    ...state,
    aiResponseFinal: true,
    history: [...state.history, { id: state.nextTurnId, role: 'agent', text: state.aiResponse, interrupted: true }],
    nextTurnId: state.nextTurnId + 1,
  };
}

/**
 * The agent cut its reply short: what of it was played replaces the text it was written as, marked
 * interrupted (as the agent's stored history keeps it; a reply nobody heard is not kept there).
 */
function cutReply(state: VoiceAgentState, heard: string): VoiceAgentState {
  const text = heard.trim();
  if (!state.aiResponseFinal && state.aiResponse) {
    const closed = { ...state, aiResponse: text, aiResponseFinal: true };
    if (text === '') return closed;
    return {
      ...closed,
      history: [...state.history, { id: state.nextTurnId, role: 'agent', text, interrupted: true }],
      nextTurnId: state.nextTurnId + 1,
    };
  }
  const last = state.history.at(-1);
  if (last?.role !== 'agent') return state;
  const kept = state.history.slice(0, -1);
  return {
    ...state,
    aiResponse: text,
    history: text === '' ? kept : [...kept, { ...last, text, interrupted: true }],
  };
}

function pushTurn(state: VoiceAgentState, role: ConversationTurn['role'], text: string): VoiceAgentState {
  return {
    ...state,
    history: [...state.history, { id: state.nextTurnId, role, text }],
    nextTurnId: state.nextTurnId + 1,
  };
}

/** Agent error codes that the controller recovers from by itself; showing them would only alarm. */
const SELF_HEALING_ERRORS = new Set([
  'unknown_session',
  'replaced',
  'ice_failed',
  'media_stalled',
  'owner_gone',
  'relay_lost',
  'going_away',
  'session_moved',
]);

/** One turn of the agent's stored history (`session.history`), if the entry is usable. */
function storedTurn(entry: unknown): Omit<ConversationTurn, 'id'> | null {
  if (typeof entry !== 'object' || entry === null) return null;
  const { role, content, interrupted } = entry as Record<string, unknown>;
  if (typeof content !== 'string' || content.trim() === '') return null;
  if (role !== 'user' && role !== 'assistant') return null;
  return { role: role === 'user' ? 'user' : 'agent', text: content, ...(interrupted === true ? { interrupted: true } : {}) };
}

/**
 * On (re)attach the agent sends its stored history. Turns it finished while our socket was down
 * are appended after the last turn both sides have; with no common turn, local history stays as
 * it is (a fresh session after the old one was lost starts empty on the agent).
 */
export function reconcileHistory(state: VoiceAgentState, stored: unknown): VoiceAgentState {
  if (!Array.isArray(stored)) return state;
  const turns = stored.map(storedTurn).filter((t): t is Omit<ConversationTurn, 'id'> => t !== null);
  if (turns.length === 0) return state;
  let missing: Omit<ConversationTurn, 'id'>[];
  const last = state.history.at(-1);
  if (!last) {
    missing = turns;
  } else {
    let at = -1;
    for (let i = turns.length - 1; i >= 0; i -= 1) {
      const turn = turns[i];
      if (turn && turn.role === last.role && turn.text.trim() === last.text.trim()) {
        at = i;
        break;
      }
    }
    missing = at >= 0 ? turns.slice(at + 1) : [];
  }
  if (missing.length === 0) return state;
  const history = [...state.history, ...missing.map((turn, i) => ({ ...turn, id: state.nextTurnId + i }))];
  return { ...state, history, nextTurnId: state.nextTurnId + missing.length };
}

function onAgentMessage(state: VoiceAgentState, message: AgentMessage): VoiceAgentState {
  switch (message.type) {
    case 'status':
      return finish(state, message.processing);
    case 'transcript': {
      if (!message.final) return { ...state, interimTranscript: message.text };
      const text = message.text.trim();
      if (text === '') return { ...state, interimTranscript: '' };
      const closed = closeOpenReply(state);
      return { ...pushTurn(closed, 'user', text), transcript: text, interimTranscript: '' };
    }
    case 'ai_response': {
      const starting = state.aiResponseFinal || state.aiResponse === null;
      const text = starting ? message.text : mergeStreamingText(state.aiResponse ?? '', message.text);
      if (!message.final) return { ...state, aiResponse: text, aiResponseFinal: false };
      const done = { ...state, aiResponse: text, aiResponseFinal: true };
      return text.trim() === '' ? done : pushTurn(done, 'agent', text);
    }
    case 'ai_interrupted':
      return cutReply(state, message.text);
    case 'metrics':
      return { ...state, turnMetrics: [...state.turnMetrics, message.turn].slice(-MAX_TURN_METRICS) };
    case 'error':
      if (SELF_HEALING_ERRORS.has(message.code)) return state;
      return {
        ...state,
        error: message.message,
        errorCode: 'agent-error',
        errorFatal: false,
        retryAfterS: null,
      };
    case 'session':
      return reconcileHistory(state, message.session.history);
    case 'answer':
    case 'offer':
    case 'ice-candidate':
    case 'pong':
    case 'playback':
      return state;
  }
}

export function voiceAgentReducer(state: VoiceAgentState, action: VoiceAgentAction): VoiceAgentState {
  switch (action.type) {
    case 'start':
      return finish(
        {
          ...state,
          active: true,
          signaling: 'idle',
          media: 'none',
          error: null,
          errorCode: null,
          errorFatal: false,
          retryAfterS: null,
          reconnect: null,
          starting: null,
          notice: null,
          interimTranscript: '',
        },
        'idle',
      );
    case 'stop':
      return finish(
        {
          ...closeOpenReply(state),
          active: false,
          sessionId: null,
          signaling: 'idle',
          media: 'none',
          reconnect: null,
          starting: null,
          interimTranscript: '',
          errorFatal: false,
          error: state.errorFatal ? null : state.error,
          errorCode: state.errorFatal ? null : state.errorCode,
        },
        'idle',
      );
    case 'ended':
      return { ...voiceAgentReducer(state, { type: 'stop' }), notice: SESSION_ENDED_NOTICE };
    case 'session-ready':
      return finish({
        ...state,
        sessionId: action.sessionId,
        starting: null,
        notice: action.replaced ? SESSION_REPLACED_NOTICE : state.notice,
      });
    case 'signaling': {
      // A lost link ends any streaming reply (it will not be finished where we can see it), and
      // what the agent is doing is unknown until it reports again on the new link.
      const lost = action.state === 'closed';
      const base = lost ? { ...closeOpenReply(state), interimTranscript: '' } : state;
      return finish(
        { ...base, signaling: action.state, reconnect: action.state === 'open' ? null : state.reconnect },
        lost ? 'idle' : state.processingStatus,
      );
    }
    case 'reconnect-scheduled':
      return finish({ ...state, reconnect: { attempt: action.attempt, delayMs: action.delayMs } });
    case 'agent-starting':
      return finish({ ...state, starting: { attempt: action.attempt, delayMs: action.delayMs } });
    case 'media':
      return finish({
        ...state,
        media: action.state,
        mediaStalls: state.mediaStalls + (action.state === 'stalled' && state.media !== 'stalled' ? 1 : 0),
      });
    case 'agent':
      if (!state.active) return state;
      return onAgentMessage(state, action.message);
    case 'protocol-error':
      return state;
    case 'fail':
      return finish(
        {
          ...closeOpenReply(state),
          active: false,
          signaling: 'idle',
          media: 'none',
          reconnect: null,
          starting: null,
          interimTranscript: '',
          error: action.message,
          errorCode: action.code,
          errorFatal: true,
          retryAfterS: action.retryAfterS ?? null,
        },
        'idle',
      );
    case 'heard':
      return { ...state, heardMs: [...state.heardMs, action.ms].slice(-MAX_TURN_METRICS) };
    case 'local-text':
      return action.text.trim() === '' ? state : pushTurn(closeOpenReply(state), 'user', action.text.trim());
    case 'dismiss':
      return finish({
        ...state,
        notice: null,
        ...(state.errorFatal ? {} : { error: null, errorCode: null, retryAfterS: null }),
      });
  }
}
