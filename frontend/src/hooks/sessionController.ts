/**
 * The side-effecting half of useVoiceAgentV2: HTTP session, signaling WebSocket, RTCPeerConnection,
 * timers. It reports everything as reducer actions and never holds UI state itself.
 *
 * Every asynchronous callback is tied to the run (one start..stop) and to the socket or peer that
 * produced it; anything from a previous run, socket or peer is ignored, which is what keeps a fast
 * stop/start or a reconnect storm from crossing wires.
 */
import { ApiError, createSession, deleteSession, sessionExists, type FetchLike, type SessionInfo } from '../api/client';
import { isCrossOrigin, signalingUrl } from '../config';
import { prepareSparePeer, spareFits, type SparePeer } from '../webrtc/sparePeer';
import { summarizeStats } from '../webrtc/stats';
import {
  closeAction,
  encodeClientMessage,
  parseAgentMessage,
  type AgentMessage,
  type ClientMessage,
} from '../signaling/messages';
import { HeardReporter, type HeardTurn } from '../audio/heard';
import type { HeardMeterLike } from '../audio/heardMeter';
import type { SpeechHoldLike } from '../audio/speechHoldNode';
import { afterPaint } from './afterPaint';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff';
import type { MediaState, VoiceAgentAction, VoiceErrorCode } from './voiceAgentReducer';

/** The part of WebSocket the controller uses; the browser's WebSocket satisfies it. */
export interface SignalingSocket {
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * The part of RTCPeerConnection the controller uses, with only the promise-based signatures (the
 * legacy callback overloads would force every stand-in to implement them too).
 */
export interface PeerLike {
  readonly connectionState: RTCPeerConnectionState;
  readonly signalingState: RTCSignalingState;
  readonly localDescription: RTCSessionDescription | null;
  readonly remoteDescription: RTCSessionDescription | null;
  onicecandidate: RTCPeerConnection['onicecandidate'];
  ontrack: RTCPeerConnection['ontrack'];
  onconnectionstatechange: RTCPeerConnection['onconnectionstatechange'];
  addTrack(track: MediaStreamTrack, ...streams: MediaStream[]): RTCRtpSender;
  /** Optional: only the peer prepared while idle (src/webrtc/sparePeer.ts) uses it. */
  addTransceiver?(kind: 'audio', init?: RTCRtpTransceiverInit): RTCRtpTransceiver;
  createOffer(options?: RTCOfferOptions): Promise<RTCSessionDescriptionInit>;
  createAnswer(options?: RTCAnswerOptions): Promise<RTCSessionDescriptionInit>;
  setLocalDescription(description?: RTCLocalSessionDescriptionInit): Promise<void>;
  setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void>;
  addIceCandidate(candidate?: RTCIceCandidateInit | null): Promise<void>;
  getStats(): Promise<RTCStatsReport>;
  close(): void;
}

export interface VoiceAgentDeps {
  fetch: FetchLike;
  createWebSocket: (url: string) => SignalingSocket;
  createPeerConnection: (config: RTCConfiguration) => PeerLike;
  /** `null` where the browser cannot capture audio (no mediaDevices, insecure context). */
  getUserMedia: ((constraints: MediaStreamConstraints) => Promise<MediaStream>) | null;
  /** Plays (or with `null`, stops) the agent's audio. */
  playRemote: (stream: MediaStream | null) => void;
  random: () => number;
  now: () => number;
  /** Whether this site may use the microphone without asking; null where the browser will not say. */
  micPermission?: () => Promise<PermissionState | null>;
  /** Times what the user hears (src/audio/heard.ts); left out where there is no Web Audio (unit tests). */
  heardMeter?: () => HeardMeterLike;
  /** Holds the user's speech across a call's move (src/audio/speechHold.ts); left out where there is no Web Audio. */
  speechHold?: () => SpeechHoldLike;
}

export interface ControllerTuning {
  backoff: BackoffPolicy;
  /** Ping period; a socket silent for interval + timeout is considered dead. */
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  /** How long ICE may sit in `disconnected` before we restart it. */
  iceDisconnectedGraceMs: number;
  /** How long an ICE restart may take before the peer is rebuilt from scratch. */
  iceRestartTimeoutMs: number;
  /** Fresh peers tried in a row before giving up on media. */
  maxPeerRebuilds: number;
  /** After signaling resumes on a kept peer: how long inbound audio may stall before a fresh peer. */
  mediaProbeMs: number;
  /** New sessions created in a row without one ever opening, before giving up. */
  maxSessionReplacements: number;
  /** How often the agent's audio is checked while the call is up. */
  mediaWatchMs: number;
  /** The agent's audio silent this long (it streams silence between replies) is a stall. */
  mediaStallMs: number;
  /** After a stall: how long audio may take to come back by itself before the peer or socket is renewed. */
  mediaRecoverMs: number;
  /** A pool scaled to zero: how long to keep asking for a session while an agent starts. */
  agentStartTimeoutMs: number;
  /** The least time between those requests, whatever Retry-After says. */
  agentStartMinDelayMs: number;
}

export const DEFAULT_TUNING: ControllerTuning = {
  backoff: DEFAULT_BACKOFF,
  keepaliveIntervalMs: 15_000,
  keepaliveTimeoutMs: 10_000,
  iceDisconnectedGraceMs: 4_000,
  iceRestartTimeoutMs: 10_000,
  maxPeerRebuilds: 3,
  mediaProbeMs: 1500,
  maxSessionReplacements: 3,
  // The agent's MEDIA_STALL_S (agent/voice_agent/protocol/signaling.py).
  mediaWatchMs: 250,
  mediaStallMs: 1500,
  mediaRecoverMs: 3000,
  // A cold start is KEDA's polling interval, scheduling, the image and the agent's own start
  // (docs/operator.md, "Scale to zero"); two minutes covers a pull of a cached image with room.
  agentStartTimeoutMs: 120_000,
  agentStartMinDelayMs: 1000,
};

export interface MediaHandles {
  localStream: MediaStream | null;
  remoteStream: MediaStream | null;
  peer: PeerLike | null;
}

export interface ControllerEvents {
  dispatch: (action: VoiceAgentAction) => void;
  media: (handles: MediaHandles) => void;
}

const OPEN = 1;
/** The largest heard figure the agent takes (docs/api.md, "Client metrics"). */
const MAX_HEARD_MS = 30_000;
/** The most a `held` answer may say was not heard (docs/api.md). */
const MAX_UNHEARD_MS = 1_000;
/** A cut reply's silence lasts until the next reply speaks, and at most this long. */
const CUT_SILENCE_MS = 1_000;
/** The agent ended the session (docs/api.md, "Close codes"); 4409 also says stop, for another reason. */
export const CLOSE_ENDED = 1000;
/** The session is intact elsewhere: among others, the close of a call a draining agent moved. */
const CLOSE_MOVED = 1012;

export const MIC_CONSTRAINTS: MediaStreamConstraints = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  video: false,
};

type Failure = { code: VoiceErrorCode; message: string; retryAfterS?: number | null };
type FailOptions = { endSession?: boolean };

export function describeMediaError(error: unknown): Failure {
  const name = error instanceof Error || (typeof error === 'object' && error !== null && 'name' in error)
    ? String((error as { name: unknown }).name)
    : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return {
        code: 'mic-permission',
        message:
          'Microphone access is blocked. Allow the microphone for this site in your browser (the icon in the ' +
          'address bar), then try again.',
      };
    case 'NotFoundError':
    case 'OverconstrainedError':
      return { code: 'mic-unavailable', message: 'No microphone was found. Connect one and try again.' };
    case 'NotReadableError':
    case 'AbortError':
      return {
        code: 'mic-unavailable',
        message: 'The microphone could not be started. It may be in use by another application.',
      };
    default:
      return { code: 'mic-unavailable', message: `The microphone could not be opened (${String(error)}).` };
  }
}

export function describeApiError(
  error: unknown,
  base: string,
  origin: string = typeof window === 'undefined' ? base : window.location.origin,
): Failure {
  if (error instanceof ApiError) {
    if (error.kind === 'unreachable') {
      // A browser reports an origin refused by the agent's CORS allowlist exactly as a network failure.
      const check = isCrossOrigin(base, origin)
        ? `that it is running and that its VOICE_CORS_ORIGINS allows this page's origin (${new URL(origin).origin})`
        : 'that it is running';
      return {
        code: 'agent-unreachable',
        message: `Cannot reach the voice agent at ${base}. Check ${check}, then try again.`,
      };
    }
    if (error.kind === 'busy' || error.kind === 'rate-limited') {
      const wait = error.retryAfterS !== null ? ` Try again in ${error.retryAfterS} s.` : ' Try again shortly.';
      const what = error.kind === 'busy' ? 'All voice agents are busy.' : 'Too many conversations were started from here.';
      return { code: 'agent-busy', message: `${what}${wait}`, retryAfterS: error.retryAfterS };
    }
    if (error.kind === 'unauthorized') {
      return {
        code: 'session-failed',
        message:
          'This agent only accepts API clients with a token (VOICE_API_TOKEN is set), so the web page cannot ' +
          'start a conversation. Ask the operator to unset it for browser use.',
      };
    }
    return { code: 'session-failed', message: error.message };
  }
  return { code: 'session-failed', message: `Could not start a session (${String(error)}).` };
}

/** Reads the number of peers a `session` event says the agent holds, when it says so. */
export function peerCount(session: Record<string, unknown>): number | null {
  const value = session.peer_connections;
  if (typeof value === 'number') return value;
  if (Array.isArray(value)) return value.length;
  // What the agent sends: an object keyed by peer ({} when it holds no media for the session).
  if (value !== null && typeof value === 'object') return Object.keys(value).length;
  return null;
}

/** Audio packets received so far on the peer, or null when its stats cannot be read. */
async function inboundPackets(pc: PeerLike): Promise<number | null> {
  try {
    return summarizeStats(await pc.getStats()).packetsReceived;
  } catch {
    return null;
  }
}

/** A held move's new media must be up within this (ms), its replay caught up within this after: else the live mic. */
const HOLD_WAIT_MS = 10_000;
const REPLAY_WAIT_MS = 20_000;

function stopTracks(stream: MediaStream | null): void {
  stream?.getTracks().forEach((track) => track.stop());
}

export class VoiceSessionController {
  private readonly base: string;
  private readonly deps: VoiceAgentDeps;
  private readonly tuning: ControllerTuning;
  private readonly events: ControllerEvents;

  private run = 0;
  private session: SessionInfo | null = null;
  private ws: SignalingSocket | null = null;
  private pc: PeerLike | null = null;
  private localStream: MediaStream | null = null;
  private remoteStream: MediaStream | null = null;
  private outbox: ClientMessage[] = [];
  private remoteCandidates: RTCIceCandidateInit[] = [];
  private reconnectAttempts = 0;
  private replacements = 0;
  /** When the first request found no agent up (a pool at zero), and how often it was asked since. */
  private startingSince: number | null = null;
  private startingAttempts = 0;
  private peerRebuilds = 0;
  private heard: HeardMeterLike | null = null;
  /** The user's speech across a move: held from the notice, sent on the new peer through `holdSender`. */
  private speech: SpeechHoldLike | null = null;
  private speechHeld = false;
  private holdSender: RTCRtpSender | null = null;
  private holdTimer: ReturnType<typeof setTimeout> | null = null;
  /** The browser said this site may use the microphone without asking (read while idle). */
  private micGranted = false;
  /** Made while idle for the next call; `adopted`: the one the current peer came from, until its offer is out. */
  private spare: SparePeer | null = null;
  private adopted: SparePeer | null = null;
  /** The adopted spare's sender while the microphone is still opening (it takes the track then). */
  private micSender: RTCRtpSender | null = null;
  /** Signaling opened before the microphone, and the session's peer cannot be made without it. */
  private peerAwaitsMic = false;
  private readonly heardReporter = new HeardReporter((turn) => this.reportHeard(turn));
  /** The agent's last processing status, to see each reply start (`speaking`) once. */
  private agentProcessing: string | null = null;
  /** Ends the silence of a cut reply if the next one has not spoken by then. */
  private cutTimer: ReturnType<typeof setTimeout> | null = null;
  private iceRestarted = false;
  private keptPeerOnResume = false;
  private lastHeard = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  private iceTimer: ReturnType<typeof setTimeout> | null = null;
  /** The speech hold's tap, waiting for the connected state's paint. */
  private cancelTap: (() => void) | null = null;
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private mediaTimer: ReturnType<typeof setInterval> | null = null;

  constructor(base: string, deps: VoiceAgentDeps, events: ControllerEvents, tuning: ControllerTuning = DEFAULT_TUNING) {
    this.base = base;
    this.deps = deps;
    this.events = events;
    this.tuning = tuning;
  }

  async start(): Promise<void> {
    this.teardown();
    const run = this.run;
    this.events.dispatch({ type: 'start' });
    const getUserMedia = this.deps.getUserMedia;
    if (!getUserMedia) {
      this.fail({
        code: 'unsupported',
        message: 'This browser cannot capture audio here. Use a current browser over https or on localhost.',
      });
      return;
    }
    // A microphone this site may already use opens while the session is asked for, and signaling
    // does not wait for it: the socket opens and the peer prepared while idle sends its offer, the
    // track going in when the microphone is open (a peer of the session's own waits for it). One
    // that asks the user first never gets a session before it is allowed.
    const early = this.micGranted ? createSession(this.deps.fetch, this.base) : undefined;
    early?.catch(() => undefined); // awaited (or discarded) below
    const ahead = early ? this.openNewSession(run, false, early) : undefined;
    let stream: MediaStream;
    try {
      stream = await getUserMedia(MIC_CONSTRAINTS);
    } catch (error) {
      // Ends a session already open (fail) or, still being asked for, once it comes (openNewSession).
      if (!ahead) this.discardSession(early);
      if (run === this.run) this.fail(describeMediaError(error));
      return;
    }
    if (run !== this.run) {
      if (!ahead) this.discardSession(early);
      stopTracks(stream);
      return;
    }
    this.localStream = stream;
    this.publishMedia();
    if (ahead) {
      this.micOpened(run, stream);
      await ahead;
    } else {
      await this.openNewSession(run, false, early);
    }
  }

  /** The microphone opened after signaling went ahead: into the peer's sender, or a peer made now. */
  private micOpened(run: number, stream: MediaStream): void {
    const [track] = stream.getAudioTracks();
    if (this.micSender && track) void this.micSender.replaceTrack(track).catch(() => undefined);
    if (this.peerAwaitsMic) {
      this.peerAwaitsMic = false;
      if (this.ws?.readyState === OPEN) this.rebuildPeer(run, false);
    }
  }

  private discardSession(pending: Promise<SessionInfo> | undefined): void {
    void pending?.then((info) => deleteSession(this.deps.fetch, this.base, info.id)).catch(() => undefined);
  }

  /**
   * Ends the conversation: tells the agent, releases the microphone, closes everything, the peer
   * prepared while idle too (a page with a live peer connection is not kept in the back/forward
   * cache).
   */
  stop(): void {
    this.endRemoteSession();
    this.teardown();
    this.dropSpare();
    this.events.dispatch({ type: 'stop' });
  }

  /** Same as stop, for unmount: no state updates. */
  dispose(): void {
    this.endRemoteSession();
    this.teardown();
    this.heard?.close();
    this.heard = null;
    this.dropSpare();
  }

  private dropSpare(): void {
    this.spare?.pc.close();
    this.spare = null;
  }

  /**
   * Makes, while the page is idle, what a call needs that no session does: the audio context of
   * the heard figure and a peer connection with its offer and candidates (src/webrtc/sparePeer.ts).
   * No request leaves the page, so a visitor who never clicks costs the agent nothing.
   */
  prepare(): void {
    this.heardMeter()?.prepare();
    this.spare ??= prepareSparePeer(this.deps.createPeerConnection);
    void this.deps.micPermission?.().then(
      (state) => (this.micGranted = state === 'granted'),
      () => undefined,
    );
  }

  sendText(text: string): boolean {
    const trimmed = text.trim();
    if (trimmed === '' || this.ws?.readyState !== OPEN) return false;
    this.send({ type: 'text', text: trimmed });
    this.events.dispatch({ type: 'local-text', text: trimmed });
    return true;
  }

  interrupt(): void {
    if (this.ws?.readyState === OPEN) this.send({ type: 'interrupt' });
  }

  // ---- session and signaling -------------------------------------------------------------------

  /** `pending`: the session already asked for (see start). */
  private async openNewSession(run: number, replaced: boolean, pending?: Promise<SessionInfo>): Promise<void> {
    let info: SessionInfo;
    try {
      info = await (pending ?? createSession(this.deps.fetch, this.base));
    } catch (error) {
      if (run !== this.run) return;
      if (error instanceof ApiError && error.kind === 'starting') {
        this.waitForAgent(run, replaced, error.retryAfterS);
        return;
      }
      const transient =
        error instanceof ApiError && (error.kind === 'unreachable' || error.kind === 'busy' || error.kind === 'rate-limited');
      if (replaced && transient) this.scheduleReconnect(run, (error.retryAfterS ?? 0) * 1000);
      else this.fail(describeApiError(error, this.base));
      return;
    }
    if (run !== this.run) {
      void deleteSession(this.deps.fetch, this.base, info.id);
      return;
    }
    this.session = info;
    this.startingSince = null;
    this.startingAttempts = 0;
    this.closePeer();
    this.events.dispatch({ type: 'session-ready', sessionId: info.id, replaced });
    this.connectSignaling(run);
  }

  /** The pool had no agent up and is starting one: ask again after Retry-After, until the bound. */
  private waitForAgent(run: number, replaced: boolean, retryAfterS: number | null): void {
    const now = this.deps.now();
    this.startingSince ??= now;
    const { agentStartTimeoutMs, agentStartMinDelayMs } = this.tuning;
    const delayMs = Math.max(agentStartMinDelayMs, (retryAfterS ?? 0) * 1000);
    if (now + delayMs - this.startingSince > agentStartTimeoutMs) {
      this.fail({
        code: 'agent-not-started',
        message: `No voice agent started within ${Math.round(agentStartTimeoutMs / 1000)} s. Try again later.`,
      });
      return;
    }
    this.startingAttempts += 1;
    this.events.dispatch({ type: 'agent-starting', attempt: this.startingAttempts, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.openNewSession(run, replaced);
    }, delayMs);
  }

  private replaceSession(run: number): void {
    this.replacements += 1;
    if (this.replacements > this.tuning.maxSessionReplacements) {
      this.fail({ code: 'session-failed', message: 'The agent keeps rejecting new sessions. Try again later.' });
      return;
    }
    this.session = null;
    this.closePeer();
    void this.openNewSession(run, true);
  }

  private connectSignaling(run: number): void {
    const session = this.session;
    if (!session) return;
    this.events.dispatch({ type: 'signaling', state: 'opening' });
    let ws: SignalingSocket;
    try {
      ws = this.deps.createWebSocket(signalingUrl(this.base, session.id, session.ws_url));
    } catch {
      this.scheduleReconnect(run);
      return;
    }
    this.ws = ws;
    const current = (): boolean => run === this.run && this.ws === ws;
    ws.onopen = () => {
      if (!current()) return;
      this.reconnectAttempts = 0;
      this.replacements = 0;
      this.lastHeard = this.deps.now();
      this.events.dispatch({ type: 'signaling', state: 'open' });
      this.startKeepalive(run, ws);
      this.flushOutbox();
      this.ensurePeer(run);
    };
    ws.onmessage = (event: MessageEvent) => {
      if (!current()) return;
      this.lastHeard = this.deps.now();
      void this.onAgentFrame(run, event.data);
    };
    ws.onerror = () => {
      // Always followed by close, which decides what to do.
    };
    ws.onclose = (event: CloseEvent) => {
      if (!current()) return;
      this.dropSocket();
      this.events.dispatch({ type: 'signaling', state: 'closed' });
      this.followClose(run, event.code);
    };
  }

  /** Does what the close code says (docs/api.md, "Close codes"; the table is CLOSE_ACTIONS). */
  private followClose(run: number, code: number): void {
    switch (closeAction(code)) {
      case 'stop':
        if (code === CLOSE_ENDED) {
          // The session is over (ended through the API or another agent): nothing to resume.
          this.teardown();
          this.events.dispatch({ type: 'ended' });
        } else {
          // Another tab or device resumed this session; fighting it over the socket helps nobody.
          this.fail(
            {
              code: 'session-taken',
              message: 'This conversation was continued in another window or device, so it ended here.',
            },
            { endSession: false },
          );
        }
        return;
      case 'new_session':
        this.replaceSession(run);
        return;
      case 'reconnect':
        if (code === CLOSE_MOVED) this.holdSpeech(); // a move told by its close alone
        this.scheduleReconnect(run, 0, true);
        return;
      case 'retry_later':
        this.scheduleReconnect(run);
        return;
    }
  }

  private dropSocket(): void {
    const ws = this.ws;
    this.ws = null;
    this.stopKeepalive();
    if (!ws) return;
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    if (ws.readyState <= OPEN) {
      try {
        ws.close(1000, 'client closing');
      } catch {
        // Already closing.
      }
    }
  }

  /**
   * `minDelayMs`: the agent's Retry-After, which the backoff never undercuts. `now`: the agent said
   * reconnect at once (the session is intact elsewhere), so a first attempt does not wait.
   */
  private scheduleReconnect(run: number, minDelayMs = 0, now = false): void {
    if (run !== this.run || this.reconnectTimer !== null) return;
    this.reconnectAttempts += 1;
    const policy = this.tuning.backoff;
    if (this.reconnectAttempts > policy.maxAttempts) {
      this.fail({
        code: 'signaling-lost',
        message: `Lost the connection to the voice agent and could not get it back after ${policy.maxAttempts} attempts.`,
      });
      return;
    }
    const first = now && this.reconnectAttempts === 1;
    const delayMs = first ? 0 : Math.max(minDelayMs, backoffDelay(this.reconnectAttempts, policy, this.deps.random));
    this.events.dispatch({ type: 'reconnect-scheduled', attempt: this.reconnectAttempts, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnect(run);
    }, delayMs);
  }

  /** Resume the same session if the agent still has it, otherwise start a new one and say so. */
  private async reconnect(run: number): Promise<void> {
    if (run !== this.run) return;
    const session = this.session;
    if (!session) {
      await this.openNewSession(run, true);
      return;
    }
    let exists: boolean;
    try {
      exists = await sessionExists(this.deps.fetch, this.base, session.id);
    } catch {
      if (run === this.run) this.scheduleReconnect(run);
      return;
    }
    if (run !== this.run) return;
    if (exists) this.connectSignaling(run);
    else this.replaceSession(run);
  }

  private startKeepalive(run: number, ws: SignalingSocket): void {
    this.stopKeepalive();
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.tuning;
    this.keepaliveTimer = setInterval(() => {
      if (run !== this.run || this.ws !== ws) return;
      if (this.deps.now() - this.lastHeard > keepaliveIntervalMs + keepaliveTimeoutMs) {
        // Half-open socket: the close handshake may never finish, so do not wait for onclose.
        this.dropSocket();
        this.events.dispatch({ type: 'signaling', state: 'closed' });
        this.scheduleReconnect(run);
        return;
      }
      this.send({ type: 'ping' });
    }, keepaliveIntervalMs);
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== null) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  private send(message: ClientMessage): void {
    if (this.ws?.readyState === OPEN) {
      this.ws.send(encodeClientMessage(message));
    } else if (message.type !== 'ping') {
      this.outbox.push(message);
    }
  }

  private flushOutbox(): void {
    const queued = this.outbox;
    this.outbox = [];
    queued.forEach((message) => this.send(message));
  }

  private async onAgentFrame(run: number, data: unknown): Promise<void> {
    const parsed = parseAgentMessage(data);
    if (!parsed.ok) {
      this.events.dispatch({ type: 'protocol-error', reason: parsed.reason });
      return;
    }
    const message = parsed.message;
    if (message.type === 'status') this.onAgentStatus(message.processing);
    if (message.type === 'playback') this.onPlayback(message.state, message.turn);
    // A new socket: a hold the old one announced may never see its resume.
    if (message.type === 'session') this.endSilence();
    if (message.type === 'error' && message.code === 'session_moved') this.holdSpeech();
    this.events.dispatch({ type: 'agent', message });
    await this.applyToPeer(run, message);
  }

  // ---- what the user hears ----------------------------------------------------------------------

  private heardMeter(): HeardMeterLike | null {
    if (!this.heard && this.deps.heardMeter) {
      this.heard = this.deps.heardMeter();
      this.heard.onTurn = (turn) => this.heardReporter.heard(turn);
    }
    return this.heard;
  }

  /**
   * The agent held, resumed or cut its reply (docs/api.md, "Hold and resume"): what the browser
   * has buffered of it is silenced at once instead of playing over the user, and on a hold the
   * agent learns how much of it the user never heard, to play that again if it resumes.
   */
  private onPlayback(state: 'held' | 'resumed' | 'cut', turn: number): void {
    const meter = this.heard;
    this.clearCutTimer();
    if (!meter) return;
    if (state === 'resumed') {
      meter.unsilence();
      return;
    }
    meter.silence();
    if (state === 'cut') {
      this.cutTimer = setTimeout(() => this.endSilence(), CUT_SILENCE_MS);
      return;
    }
    const ws = this.ws;
    void meter.unheard().then((ms) => {
      // Never queued: a late answer is for a hold that is over.
      if (ms === null || this.ws !== ws || ws?.readyState !== OPEN) return;
      ws.send(encodeClientMessage({ type: 'held', turn, unheard_ms: Math.round(Math.min(ms, MAX_UNHEARD_MS) * 10) / 10 }));
    });
  }

  private endSilence(): void {
    this.clearCutTimer();
    this.heard?.unsilence();
  }

  private clearCutTimer(): void {
    if (this.cutTimer !== null) clearTimeout(this.cutTimer);
    this.cutTimer = null;
  }

  private onAgentStatus(processing: string): void {
    // A new reply speaks: a cut reply's silence is over (a held one waits for its resume).
    if (processing === 'speaking' && this.cutTimer !== null) this.endSilence();
    const now = this.heard?.now() ?? null;
    if (processing === 'speaking' && this.agentProcessing !== 'speaking' && now !== null) {
      this.heardReporter.replyStarted(now);
    }
    this.agentProcessing = processing;
  }

  /** One reply as heard: to the agent (docs/api.md, "Client metrics") and to the dashboard. */
  private reportHeard(turn: HeardTurn): void {
    const ms = Math.round(turn.ms);
    if (!(ms > 0 && ms <= MAX_HEARD_MS)) return;
    // Never queued: after a reconnect the agent may count its replies anew.
    if (this.ws?.readyState === OPEN) this.ws.send(encodeClientMessage({ type: 'client_metrics', voice_to_voice_ms: ms }));
    this.events.dispatch({ type: 'heard', ms });
  }

  // ---- the user's speech across a move (docs/deploy.md, "Rolling a pool") ----------------------

  private speechHolder(): SpeechHoldLike | null {
    if (!this.speech && this.deps.speechHold) this.speech = this.deps.speechHold();
    return this.speech;
  }

  /**
   * The move's notice: the old agent stopped listening a moment ago, so from a moment before now
   * the user's speech is kept for the next peer connection. Bounded: never a user left unheard.
   */
  private holdSpeech(): void {
    if (this.speechHeld || !this.speech?.hold()) return;
    this.speechHeld = true;
    this.armHoldTimer(HOLD_WAIT_MS);
  }

  /** The new peer is up: it gets what was held, then the live microphone once the delay is gone. */
  private releaseHeld(pc: PeerLike): void {
    const sender = this.holdSender;
    if (!this.speechHeld || !sender || !this.speech) return;
    this.armHoldTimer(REPLAY_WAIT_MS);
    this.speech.release(() => {
      if (this.pc === pc && this.holdSender === sender) this.endHold();
    });
  }

  /** Back to the live microphone on the current peer, at once; whatever was held is dropped. */
  private endHold(): void {
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    if (this.speechHeld) this.speech?.cancel();
    this.speechHeld = false;
    const sender = this.holdSender;
    this.holdSender = null;
    const [mic] = this.localStream?.getAudioTracks() ?? [];
    if (sender && mic) void sender.replaceTrack(mic).catch(() => undefined);
  }

  private armHoldTimer(ms: number): void {
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => this.endHold(), ms);
  }

  // ---- WebRTC ----------------------------------------------------------------------------------

  /** After (re)opening signaling: keep a live peer (only the socket dropped), else negotiate anew. */
  private ensurePeer(run: number): void {
    const pc = this.pc;
    this.keptPeerOnResume = pc !== null && pc.connectionState === 'connected';
    if (pc && this.keptPeerOnResume) {
      void this.probeKeptPeer(run, pc);
      return;
    }
    this.rebuildPeer(run, false);
  }

  /**
   * A kept peer may belong to an agent that no longer has it (the agent restarted and resumed the
   * session from the store, or suspended the call): ICE would report that only after many
   * seconds, showing "connected" over a dead path meanwhile. The agent streams audio all the time
   * (silence when idle), so a live path keeps delivering packets; if none arrive within the probe
   * window, negotiate a fresh peer right away.
   */
  private async probeKeptPeer(run: number, pc: PeerLike): Promise<void> {
    const current = (): boolean => run === this.run && this.pc === pc;
    const before = await inboundPackets(pc);
    if (!current()) return;
    this.clearProbeTimer();
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void (async () => {
        const after = await inboundPackets(pc);
        if (!current()) return;
        if (before !== null && after !== null && after > before) {
          this.endHold(); // the media did not move: the microphone reached the agent all along
          return;
        }
        this.keptPeerOnResume = false;
        this.rebuildPeer(run, false);
      })();
    }, this.tuning.mediaProbeMs);
  }

  /**
   * The agent streams audio all the time (silence between replies), so inbound packets that stop
   * while the call is up are a stall, whatever its cause: shown at once (media `stalled`), then
   * recovered if it does not end by itself: a fresh offer when the agent still answers on the
   * socket, else a new socket. Only audio that flowed and then stopped counts; a tick that comes
   * late (a throttled background tab) restarts the clock rather than blame the agent.
   */
  private watchMedia(run: number, pc: PeerLike): void {
    this.clearMediaTimer();
    const { mediaWatchMs, mediaStallMs, mediaRecoverMs } = this.tuning;
    let packets = 0;
    let flowingAt = this.deps.now();
    let tickedAt = flowingAt;
    let stalledAt: number | null = null;
    let heardAtStall = 0;
    let reading = false;
    const current = (): boolean => run === this.run && this.pc === pc;
    const check = async (): Promise<void> => {
      const now = this.deps.now();
      if (now - tickedAt > mediaWatchMs + mediaStallMs / 2) flowingAt = now;
      tickedAt = now;
      const seen = await inboundPackets(pc);
      if (!current() || seen === null) return;
      if (seen > packets) {
        packets = seen;
        flowingAt = now;
        if (stalledAt !== null) this.setMedia('connected');
        stalledAt = null;
        return;
      }
      if (packets === 0 || this.ws?.readyState !== OPEN || pc.connectionState !== 'connected') return;
      if (stalledAt === null && now - flowingAt > mediaStallMs) {
        stalledAt = now;
        heardAtStall = this.lastHeard;
        this.setMedia('stalled');
        this.send({ type: 'ping' });
      } else if (stalledAt !== null && now - stalledAt > mediaRecoverMs) {
        stalledAt = null;
        flowingAt = now;
        if (this.lastHeard > heardAtStall) {
          this.restartIce(run); // the agent answers: its media path is what broke
        } else {
          this.dropSocket(); // nothing from the agent at all: a dead socket
          this.events.dispatch({ type: 'signaling', state: 'closed' });
          this.scheduleReconnect(run, 0, true);
        }
      }
    };
    this.mediaTimer = setInterval(() => {
      if (reading || !current()) return;
      reading = true;
      void check().finally(() => {
        reading = false;
      });
    }, mediaWatchMs);
  }

  private clearMediaTimer(): void {
    if (this.mediaTimer !== null) clearInterval(this.mediaTimer);
    this.mediaTimer = null;
  }

  private clearProbeTimer(): void {
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  private rebuildPeer(run: number, counted: boolean): void {
    if (counted) {
      this.peerRebuilds += 1;
      if (this.peerRebuilds > this.tuning.maxPeerRebuilds) {
        this.fail({
          code: 'media-failed',
          message:
            'The audio connection to the agent keeps failing. A firewall may be blocking UDP; check the network ' +
            'or the TURN server configuration, then try again.',
        });
        return;
      }
    }
    this.closePeer();
    const session = this.session;
    if (!this.localStream && !(session && this.spare && spareFits(this.spare, session.ice_servers))) {
      this.peerAwaitsMic = true; // its offer must carry the track: made when the microphone opens
      return;
    }
    this.createPeer(run);
    void this.negotiate(run, false);
  }

  private createPeer(run: number): void {
    const session = this.session;
    if (!session) return;
    const spare = this.spare && spareFits(this.spare, session.ice_servers) ? this.spare : null;
    if (spare) this.spare = null;
    this.adopted = spare;
    const pc = spare?.pc ?? this.deps.createPeerConnection({ iceServers: session.ice_servers });
    this.pc = pc;
    this.iceRestarted = false;
    this.remoteCandidates = [];
    const stream = this.localStream;
    const [micTrack] = stream?.getAudioTracks() ?? [];
    const held = this.speechHeld && stream ? (this.speech?.track() ?? null) : null;
    if (held && stream) {
      // A moved call: what the user says goes through the hold until it has caught up.
      if (spare) void spare.sender.replaceTrack(held).catch(() => this.endHold());
      this.holdSender = spare?.sender ?? pc.addTrack(held, stream);
    } else if (spare && micTrack) void spare.sender.replaceTrack(micTrack).catch(() => undefined);
    else if (spare) this.micSender = spare.sender; // the offer goes out now, the track when the mic opens
    else stream?.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
    const current = (): boolean => run === this.run && this.pc === pc;
    pc.ontrack = (event: RTCTrackEvent) => {
      if (!current()) return;
      this.remoteStream = event.streams[0] ?? new MediaStream([event.track]);
      this.deps.playRemote(this.remoteStream);
      this.publishMedia();
    };
    pc.onicecandidate = (event: RTCPeerConnectionIceEvent) => {
      if (!current()) return;
      const candidate = event.candidate;
      this.send({
        type: 'ice-candidate',
        candidate: candidate && candidate.candidate !== '' ? candidate.candidate : null,
        sdpMid: candidate?.sdpMid ?? null,
        sdpMLineIndex: candidate?.sdpMLineIndex ?? null,
      });
    };
    pc.onconnectionstatechange = () => {
      if (current()) this.onPeerState(run, pc);
    };
    this.setMedia('connecting');
    this.publishMedia();
  }

  private onPeerState(run: number, pc: PeerLike): void {
    switch (pc.connectionState) {
      case 'connected':
        this.clearIceTimer();
        this.peerRebuilds = 0;
        this.iceRestarted = false;
        this.setMedia('connected');
        this.watchMedia(run, pc);
        // Tapped once media is up and shown (its AudioContext would hold up that paint; a move comes later).
        this.cancelTap?.();
        this.cancelTap = afterPaint(() => {
          this.cancelTap = null;
          if (run === this.run && this.pc === pc) this.speechHolder()?.listen(this.localStream);
        });
        this.releaseHeld(pc);
        break;
      case 'disconnected':
        // Often transient (a network blip); give ICE a moment before restarting it.
        this.clearIceTimer();
        this.iceTimer = setTimeout(() => {
          this.iceTimer = null;
          if (run === this.run && this.pc === pc && pc.connectionState !== 'connected') this.restartIce(run);
        }, this.tuning.iceDisconnectedGraceMs);
        break;
      case 'failed':
        this.restartIce(run);
        break;
      default:
        break;
    }
  }

  /** First an ICE restart on the same peer; if that does not help, a brand-new peer. */
  private restartIce(run: number): void {
    this.clearIceTimer();
    if (this.ws?.readyState !== OPEN) {
      // Signaling is down too; ensurePeer renegotiates once it is back.
      this.setMedia('failed');
      return;
    }
    if (this.iceRestarted) {
      this.rebuildPeer(run, true);
      return;
    }
    this.iceRestarted = true;
    this.setMedia('restarting');
    const pc = this.pc;
    void this.negotiate(run, true);
    this.iceTimer = setTimeout(() => {
      this.iceTimer = null;
      if (run === this.run && this.pc === pc && pc?.connectionState !== 'connected') this.rebuildPeer(run, true);
    }, this.tuning.iceRestartTimeoutMs);
  }

  private async negotiate(run: number, iceRestart: boolean): Promise<void> {
    const pc = this.pc;
    if (!pc) return;
    const spare = this.adopted;
    this.adopted = null;
    if (spare?.pc === pc && !iceRestart && (await spare.offered)) {
      if (run !== this.run || this.pc !== pc) return;
      // The offer made while idle, with the candidates gathered since (a local description has them).
      this.send({ type: 'offer', sdp: pc.localDescription?.sdp ?? '' });
      if (spare.gathered) this.send({ type: 'ice-candidate', candidate: null, sdpMid: null, sdpMLineIndex: null });
      return;
    }
    try {
      const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : undefined);
      if (run !== this.run || this.pc !== pc) return;
      await pc.setLocalDescription(offer);
      if (run !== this.run || this.pc !== pc) return;
      this.send({ type: 'offer', sdp: pc.localDescription?.sdp ?? offer.sdp ?? '' });
    } catch (error) {
      if (run !== this.run || this.pc !== pc) return;
      this.fail({ code: 'media-failed', message: `Could not set up audio (${String(error)}).` });
    }
  }

  private async applyToPeer(run: number, message: AgentMessage): Promise<void> {
    const pc = this.pc;
    const current = (): boolean => run === this.run && this.pc === pc;
    try {
      switch (message.type) {
        case 'answer':
          if (!pc || pc.signalingState !== 'have-local-offer') return;
          await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
          if (current()) await this.flushRemoteCandidates();
          return;
        case 'offer': {
          if (!pc) return;
          // The agent renegotiates; we are the polite side, so a colliding local offer is rolled back.
          await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
          if (!current()) return;
          const answer = await pc.createAnswer();
          if (!current()) return;
          await pc.setLocalDescription(answer);
          if (!current()) return;
          this.send({ type: 'answer', sdp: pc.localDescription?.sdp ?? answer.sdp ?? '' });
          await this.flushRemoteCandidates();
          return;
        }
        case 'ice-candidate': {
          if (!pc || message.candidate === null) return;
          const init: RTCIceCandidateInit = {
            candidate: message.candidate,
            sdpMid: message.sdpMid,
            sdpMLineIndex: message.sdpMLineIndex,
          };
          if (pc.remoteDescription) await pc.addIceCandidate(init);
          else this.remoteCandidates.push(init);
          return;
        }
        case 'session':
          // Resumed on an agent that holds no peer for us (e.g. another pod took the session over).
          if (this.keptPeerOnResume && peerCount(message.session) === 0) {
            this.keptPeerOnResume = false;
            this.rebuildPeer(run, false);
          }
          return;
        case 'error':
          // The agent hears nothing from us although media is up: a fresh offer (ICE restart).
          if (message.code === 'media_stalled' && pc) this.restartIce(run);
          return;
        default:
          return;
      }
    } catch (error) {
      if (!current()) return;
      // A description the browser rejects leaves the peer unusable; start it over.
      console.warn('voicepool: signaling step failed, renegotiating', error);
      this.rebuildPeer(run, true);
    }
  }

  private async flushRemoteCandidates(): Promise<void> {
    const pc = this.pc;
    const queued = this.remoteCandidates;
    this.remoteCandidates = [];
    for (const candidate of queued) {
      await pc?.addIceCandidate(candidate).catch(() => undefined);
    }
  }

  private setMedia(state: MediaState): void {
    this.events.dispatch({ type: 'media', state });
  }

  private clearIceTimer(): void {
    if (this.iceTimer !== null) clearTimeout(this.iceTimer);
    this.iceTimer = null;
  }

  private closePeer(): void {
    this.cancelTap?.();
    this.cancelTap = null;
    this.clearCutTimer();
    this.clearIceTimer();
    this.clearProbeTimer();
    this.clearMediaTimer();
    const pc = this.pc;
    this.pc = null;
    this.micSender = null;
    this.holdSender = null; // gone with its peer; a hold still on goes into the next one
    this.keptPeerOnResume = false;
    if (pc) {
      pc.ontrack = null;
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
    if (this.remoteStream) {
      this.remoteStream = null;
      this.deps.playRemote(null);
    }
  }

  private publishMedia(): void {
    this.heardMeter()?.listen(this.localStream, this.remoteStream);
    this.events.media({ localStream: this.localStream, remoteStream: this.remoteStream, peer: this.pc });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  private endRemoteSession(): void {
    const session = this.session;
    if (!session) return;
    if (this.ws?.readyState === OPEN) this.ws.send(encodeClientMessage({ type: 'end' }));
    else void deleteSession(this.deps.fetch, this.base, session.id);
  }

  private fail(failure: Failure, { endSession = true }: FailOptions = {}): void {
    if (endSession) this.endRemoteSession();
    this.teardown();
    this.events.dispatch({ type: 'fail', ...failure });
  }

  /** Releases everything and invalidates callbacks still in flight from the previous run. */
  private teardown(): void {
    this.run += 1;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.dropSocket();
    this.endHold();
    this.speech?.close(); // its audio context too: a page between calls runs none for it
    this.speech = null;
    this.closePeer();
    stopTracks(this.localStream);
    this.localStream = null;
    this.session = null;
    this.outbox = [];
    this.reconnectAttempts = 0;
    this.replacements = 0;
    this.startingSince = null;
    this.startingAttempts = 0;
    this.peerRebuilds = 0;
    this.heardReporter.reset();
    this.agentProcessing = null;
    this.peerAwaitsMic = false;
    this.publishMedia();
  }
}
