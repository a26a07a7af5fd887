/**
 * In-memory stand-ins for the agent (HTTP + signaling socket) and for the browser's media objects,
 * so the hook's state machine can be driven message by message. The browser e2e runs the real ones.
 */
import { vi } from 'vitest';
import type { PeerLike, SignalingSocket, VoiceAgentDeps } from '../src/hooks/sessionController';
import type { ClientMessage } from '../src/signaling/messages';

export class FakeSocket implements SignalingSocket {
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  readonly sent: ClientMessage[] = [];
  closedByClient: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data) as ClientMessage);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  // ---- driven by the test (the "server side") ----
  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }

  receive(message: Record<string, unknown> | string): void {
    const data = typeof message === 'string' ? message : JSON.stringify(message);
    this.onmessage?.(new MessageEvent('message', { data }));
  }

  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.(new CloseEvent('close', { code, reason, wasClean: code !== 1006 }));
  }

  types(): string[] {
    return this.sent.map((m) => m.type);
  }
}

/** Session records and the HTTP routes of the agent, with switches for outages and capacity. */
export class FakeAgent {
  sockets: FakeSocket[] = [];
  sessions = new Set<string>();
  requests: string[] = [];
  down = false;
  /** Refuse POST /v2/sessions with this status (503 full, 429 rate limited, 401 token) and Retry-After;
   * `code: 'agent_starting'` is the operator's waker answering for a pool at zero agents. */
  refuse: { status: number; retryAfter?: number; code?: string } | null = null;
  private counter = 0;

  readonly fetch = vi.fn(async (url: string, init?: RequestInit): Promise<Response> => {
    const method = init?.method ?? 'GET';
    const path = new URL(url).pathname;
    this.requests.push(`${method} ${path}`);
    if (this.down) throw new TypeError('Failed to fetch');
    if (method === 'POST' && path === '/v2/sessions') {
      if (this.refuse !== null) {
        const { status, retryAfter, code } = this.refuse;
        const headers: Record<string, string> = retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) };
        const body = { detail: `refused (${status})`, ...(code === undefined ? {} : { code }) };
        return new Response(JSON.stringify(body), { status, headers });
      }
      this.counter += 1;
      const id = `s${this.counter}`;
      this.sessions.add(id);
      return Response.json(
        {
          id,
          ws_url: `ws://agent.test/ws/v2/${id}`,
          ws_path: `/ws/v2/${id}`,
          ice_servers: [{ urls: 'stun:stun.test:3478' }, { bogus: true }],
          expires_at: '2030-01-01T00:00:00Z',
          status: 'created',
        },
        { status: 201 },
      );
    }
    const match = /^\/v2\/sessions\/(.+)$/.exec(path);
    if (match?.[1]) {
      const known = this.sessions.has(match[1]);
      if (method === 'DELETE') {
        this.sessions.delete(match[1]);
        return new Response(null, { status: known ? 204 : 404 });
      }
      return known ? Response.json({ id: match[1] }) : Response.json({ detail: 'no such session' }, { status: 404 });
    }
    return new Response('not found', { status: 404 });
  });

  readonly createWebSocket = (url: string): FakeSocket => {
    const socket = new FakeSocket(url);
    this.sockets.push(socket);
    return socket;
  };

  get socket(): FakeSocket {
    const last = this.sockets.at(-1);
    if (!last) throw new Error('no socket was opened');
    return last;
  }

  /** Simulates an agent restart with an in-memory store: every session is forgotten. */
  forgetSessions(): void {
    this.sessions.clear();
  }
}

export class FakePeer implements PeerLike {
  connectionState: RTCPeerConnectionState = 'new';
  signalingState: RTCSignalingState = 'stable';
  localDescription: RTCSessionDescription | null = null;
  remoteDescription: RTCSessionDescription | null = null;
  onicecandidate: PeerLike['onicecandidate'] = null;
  ontrack: PeerLike['ontrack'] = null;
  onconnectionstatechange: PeerLike['onconnectionstatechange'] = null;
  readonly offers: RTCOfferOptions[] = [];
  readonly candidates: RTCIceCandidateInit[] = [];
  readonly tracks: MediaStreamTrack[] = [];
  /** One per addTrack; `replaceTrack` swaps what it sends. */
  readonly senders: { track: MediaStreamTrack | null; replaceTrack: (track: MediaStreamTrack | null) => Promise<void> }[] = [];
  closed = false;
  rejectAnswer = false;
  private offersMade = 0;

  constructor(readonly config: RTCConfiguration) {}

  addTrack(track: MediaStreamTrack): RTCRtpSender {
    this.tracks.push(track);
    const sender = {
      track: track as MediaStreamTrack | null,
      replaceTrack: async (next: MediaStreamTrack | null) => {
        sender.track = next;
      },
    };
    this.senders.push(sender);
    return sender as unknown as RTCRtpSender;
  }

  async createOffer(options?: RTCOfferOptions): Promise<RTCSessionDescriptionInit> {
    this.offers.push(options ?? {});
    this.offersMade += 1;
    return { type: 'offer', sdp: `v=0 offer ${this.offersMade}${options?.iceRestart ? ' ice-restart' : ''}` };
  }

  async createAnswer(): Promise<RTCSessionDescriptionInit> {
    return { type: 'answer', sdp: 'v=0 client-answer' };
  }

  async setLocalDescription(description?: RTCLocalSessionDescriptionInit): Promise<void> {
    this.localDescription = description as RTCSessionDescription;
    this.signalingState = description?.type === 'offer' ? 'have-local-offer' : 'stable';
  }

  async setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void> {
    if (description.type === 'answer' && this.rejectAnswer) throw new Error('InvalidAccessError: fingerprint changed');
    this.remoteDescription = description as RTCSessionDescription;
    this.signalingState = description.type === 'offer' ? 'have-remote-offer' : 'stable';
  }

  async addIceCandidate(candidate?: RTCIceCandidateInit | null): Promise<void> {
    if (candidate) this.candidates.push(candidate);
  }

  /** Inbound audio packets so far; a test bumps it to say "the agent's audio is arriving". */
  packetsReceived = 0;

  async getStats(): Promise<RTCStatsReport> {
    const inbound = { id: 'IA', type: 'inbound-rtp', kind: 'audio', packetsReceived: this.packetsReceived, packetsLost: 0 };
    return new Map([['IA', inbound]]) as unknown as RTCStatsReport;
  }

  close(): void {
    this.closed = true;
    this.connectionState = 'closed';
  }

  // ---- driven by the test ----
  setState(state: RTCPeerConnectionState): void {
    this.connectionState = state;
    this.onconnectionstatechange?.call(this as unknown as RTCPeerConnection, new Event('connectionstatechange'));
  }

  gather(candidate: string | null): void {
    const event = {
      candidate: candidate === null ? null : { candidate, sdpMid: '0', sdpMLineIndex: 0 },
    } as RTCPeerConnectionIceEvent;
    this.onicecandidate?.call(this as unknown as RTCPeerConnection, event);
  }

  remoteTrack(): void {
    const stream = { id: 'remote' } as MediaStream;
    this.ontrack?.call(this as unknown as RTCPeerConnection, { streams: [stream], track: {} } as unknown as RTCTrackEvent);
  }
}

export interface FakeMic {
  stream: MediaStream;
  stop: ReturnType<typeof vi.fn>;
}

export function fakeMic(): FakeMic {
  const stop = vi.fn();
  const track = { kind: 'audio', stop } as unknown as MediaStreamTrack;
  const stream = { getTracks: () => [track], getAudioTracks: () => [track] } as unknown as MediaStream;
  return { stream, stop };
}

export interface Harness {
  agent: FakeAgent;
  peers: FakePeer[];
  mic: FakeMic;
  played: (MediaStream | null)[];
  deps: VoiceAgentDeps;
  peer: () => FakePeer;
}

export function harness(overrides: Partial<VoiceAgentDeps> = {}): Harness {
  const agent = new FakeAgent();
  const peers: FakePeer[] = [];
  const mic = fakeMic();
  const played: (MediaStream | null)[] = [];
  const deps: VoiceAgentDeps = {
    fetch: agent.fetch,
    createWebSocket: agent.createWebSocket,
    createPeerConnection: (config) => {
      const peer = new FakePeer(config);
      peers.push(peer);
      return peer;
    },
    getUserMedia: vi.fn(async () => mic.stream),
    playRemote: (stream) => played.push(stream),
    random: () => 0.5,
    now: () => Date.now(),
    ...overrides,
  };
  return {
    agent,
    peers,
    mic,
    played,
    deps,
    peer: () => {
      const last = peers.at(-1);
      if (!last) throw new Error('no peer was created');
      return last;
    },
  };
}
