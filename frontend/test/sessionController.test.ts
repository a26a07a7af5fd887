import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_TUNING } from '../src/hooks/sessionController';
import { SESSION_ENDED_NOTICE, SESSION_REPLACED_NOTICE } from '../src/hooks/voiceAgentReducer';
import { closeAction, type CloseAction } from '../src/signaling/messages';
import schema from '../src/signaling/protocol.schema.json';
import { AGENT, ANSWER, connect, drive, fakeTimersEach, settle, type Driven } from './controller';

describe('VoiceSessionController: first connection', () => {
  it('opens the mic, creates a session over HTTP, then signals offer and trickle ICE in order', async () => {
    const d = drive();
    await d.controller.start();
    await settle();
    expect(d.deps.getUserMedia).toHaveBeenCalledTimes(1);
    expect(d.agent.requests).toEqual(['POST /v2/sessions']);
    expect(d.state()).toMatchObject({ sessionId: 's1', connectionStatus: 'connecting', signaling: 'opening' });
    expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s1');
    expect(d.peers).toHaveLength(0); // no peer before signaling is up

    d.agent.socket.open();
    await settle();
    const peer = d.peer();
    // Malformed ICE server entries from the agent are dropped, not passed to the browser.
    expect(peer.config.iceServers).toEqual([{ urls: 'stun:stun.test:3478' }]);
    expect(peer.tracks).toHaveLength(1);
    expect(d.agent.socket.types()).toEqual(['offer']);

    peer.gather('candidate:1 1 udp 1 127.0.0.1 5000 typ host');
    peer.gather(null);
    d.agent.socket.receive(ANSWER);
    await settle();
    expect(peer.remoteDescription).toMatchObject({ type: 'answer', sdp: 'v=0 agent-answer' });
    expect(d.agent.socket.sent.slice(1)).toEqual([
      { type: 'ice-candidate', candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 },
      { type: 'ice-candidate', candidate: null, sdpMid: null, sdpMLineIndex: null },
    ]);

    peer.setState('connected');
    expect(d.state().connectionStatus).toBe('connected');
    peer.remoteTrack();
    expect(d.played.at(-1)).toMatchObject({ id: 'remote' });
    expect(d.media.at(-1)?.peer).toBe(peer);
  });

  it('holds agent candidates that arrive before the answer and applies them after it', async () => {
    const d = drive();
    await d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    d.agent.socket.receive({ type: 'ice-candidate', candidate: 'candidate:9 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 });
    await settle();
    expect(d.peer().candidates).toHaveLength(0);
    d.agent.socket.receive(ANSWER);
    d.agent.socket.receive({ type: 'ice-candidate', candidate: null, sdpMid: null, sdpMLineIndex: null });
    await settle();
    expect(d.peer().candidates.map((c) => c.candidate)).toEqual(['candidate:9 1 udp 1 127.0.0.1 9 typ host']);
  });

  it('streams agent events into state: status, interim and final transcript, reply, metrics', async () => {
    const d = drive();
    await connect(d);
    const s = d.agent.socket;
    s.receive({ type: 'status', processing: 'listening' });
    s.receive({ type: 'transcript', text: 'what time', final: false });
    expect(d.state()).toMatchObject({ processingStatus: 'listening', interimTranscript: 'what time' });
    s.receive({ type: 'transcript', text: 'what time is it', final: true });
    s.receive({ type: 'status', processing: 'processing' });
    s.receive({ type: 'ai_response', text: 'It is', final: false });
    s.receive({ type: 'ai_response', text: 'It is noon.', final: false });
    expect(d.state()).toMatchObject({ aiResponse: 'It is noon.', aiResponseFinal: false, interimTranscript: '' });
    s.receive({ type: 'ai_response', text: 'It is noon.', final: true });
    s.receive({ type: 'metrics', turn: { stt_ms: 120, llm_first_token_ms: 30, tts_first_audio_ms: 80, voice_to_voice_ms: 400 } });
    s.receive({ type: 'status', processing: 'speaking' });
    await settle();
    const state = d.state();
    expect(state.processingStatus).toBe('speaking');
    expect(state.transcript).toBe('what time is it');
    expect(state.history.map((t) => [t.role, t.text])).toEqual([
      ['user', 'what time is it'],
      ['agent', 'It is noon.'],
    ]);
    expect(state.turnMetrics).toEqual([{ stt_ms: 120, llm_first_token_ms: 30, tts_first_audio_ms: 80, voice_to_voice_ms: 400 }]);
  });

  it('survives bad frames and reports agent errors without ending the conversation', async () => {
    const d = drive();
    await connect(d);
    d.agent.socket.receive('not json');
    d.agent.socket.receive({ type: 'mystery' });
    d.agent.socket.receive({ type: 'status', processing: 'dancing' });
    await settle();
    expect(d.actions.filter((a) => a.type === 'protocol-error')).toHaveLength(3);
    d.agent.socket.receive({ type: 'error', code: 'invalid_sdp', message: 'sdp must start with v=0' });
    expect(d.state()).toMatchObject({ connectionStatus: 'connected', error: 'sdp must start with v=0', errorFatal: false });
    // Errors the controller heals by itself are not shown.
    d.controller.interrupt();
    d.agent.socket.receive({ type: 'error', code: 'ice_failed', message: 'media connection failed' });
    expect(d.state().error).toBe('sdp must start with v=0');
    expect(d.agent.socket.types()).toContain('interrupt');
  });

  it('sends typed text only while signaling is open and records it as a user turn', async () => {
    const d = drive();
    await d.controller.start();
    await settle();
    expect(d.controller.sendText('hi')).toBe(false);
    d.agent.socket.open();
    await settle();
    expect(d.controller.sendText('  hi there ')).toBe(true);
    expect(d.controller.sendText('   ')).toBe(false);
    expect(d.agent.socket.sent.filter((m) => m.type === 'text')).toEqual([{ type: 'text', text: 'hi there' }]);
    expect(d.state().history.map((t) => t.text)).toEqual(['hi there']);
  });
});

describe('VoiceSessionController: failures at start', () => {
  it('explains a blocked microphone and never creates a session', async () => {
    const denied = Object.assign(new Error('Permission denied'), { name: 'NotAllowedError' });
    const d = drive({}, { getUserMedia: vi.fn(async () => Promise.reject(denied)) });
    await d.controller.start();
    await settle();
    expect(d.agent.requests).toEqual([]);
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'mic-permission', errorFatal: true, active: false });
    expect(d.state().error).toMatch(/Microphone access is blocked/);
  });

  it('says when the browser cannot capture audio at all', async () => {
    const d = drive({}, { getUserMedia: null });
    await d.controller.start();
    expect(d.state().errorCode).toBe('unsupported');
  });

  it('reports an unreachable agent and releases the microphone', async () => {
    const d = drive();
    d.agent.down = true;
    await d.controller.start();
    await settle();
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'agent-unreachable' });
    expect(d.state().error).toContain(AGENT);
    expect(d.mic.stop).toHaveBeenCalled();
  });

  it('passes on Retry-After when every agent is busy or this address is rate limited', async () => {
    const d = drive();
    d.agent.refuse = { status: 503, retryAfter: 7 };
    await d.controller.start();
    await settle();
    expect(d.state()).toMatchObject({ errorCode: 'agent-busy', retryAfterS: 7 });
    expect(d.state().error).toContain('All voice agents are busy. Try again in 7 s');
    d.agent.refuse = { status: 429, retryAfter: 2 };
    await d.controller.start();
    await settle();
    expect(d.state()).toMatchObject({ errorCode: 'agent-busy', retryAfterS: 2 });
    expect(d.state().error).toContain('Too many conversations were started from here. Try again in 2 s');
  });

  it('explains that an agent requiring an API token cannot be used from the page', async () => {
    const d = drive();
    d.agent.refuse = { status: 401 };
    await d.controller.start();
    await settle();
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'session-failed' });
    expect(d.state().error).toContain('VOICE_API_TOKEN');
  });
});

describe('VoiceSessionController: a pool scaled to zero', () => {
  // Date too: the bound on waiting is measured with deps.now.
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits for an agent to start when the pool is at zero, never sooner than Retry-After', async () => {
    const d = drive();
    d.agent.refuse = { status: 503, retryAfter: 2, code: 'agent_starting' };
    await d.controller.start();
    await settle();
    expect(d.state()).toMatchObject({ connectionStatus: 'connecting', starting: { attempt: 1, delayMs: 2000 }, error: null });
    await vi.advanceTimersByTimeAsync(1999);
    expect(d.agent.requests.filter((r) => r === 'POST /v2/sessions')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(d.agent.requests.filter((r) => r === 'POST /v2/sessions')).toHaveLength(2);
    expect(d.state().starting).toEqual({ attempt: 2, delayMs: 2000 });
    // An agent is up: the next request gets a session and the conversation goes on as usual.
    d.agent.refuse = null;
    await vi.advanceTimersByTimeAsync(2000);
    await settle();
    expect(d.state()).toMatchObject({ sessionId: 's1', starting: null, signaling: 'opening', notice: null });
  });

  it('gives up with a clear error when no agent starts within the bound', async () => {
    const d = drive({ agentStartTimeoutMs: 5000 });
    d.agent.refuse = { status: 503, retryAfter: 0, code: 'agent_starting' };
    await d.controller.start();
    await settle();
    // Retry-After 0 is still paced (agentStartMinDelayMs).
    expect(d.state().starting).toEqual({ attempt: 1, delayMs: 1000 });
    await vi.advanceTimersByTimeAsync(10_000);
    await settle();
    expect(d.agent.requests.filter((r) => r === 'POST /v2/sessions')).toHaveLength(6);
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'agent-not-started', starting: null });
    expect(d.state().error).toBe('No voice agent started within 5 s. Try again later.');
    expect(d.mic.stop).toHaveBeenCalled();
  });
});

describe('VoiceSessionController: recovery', () => {
  fakeTimersEach();

  it('reconnects a dropped socket after a backoff and resumes the same session, keeping the live peer', async () => {
    const d = drive();
    await connect(d);
    const peer = d.peer();
    d.agent.socket.drop(1006);
    expect(d.state()).toMatchObject({ connectionStatus: 'connecting', reconnect: { attempt: 1, delayMs: 500 } });
    await vi.advanceTimersByTimeAsync(499);
    expect(d.agent.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(d.agent.requests).toEqual(['POST /v2/sessions', 'GET /v2/sessions/s1']);
    expect(d.agent.sockets).toHaveLength(2);
    expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s1');
    d.agent.socket.open();
    await settle();
    // The agent's audio keeps arriving through the probe window...
    peer.packetsReceived += 75;
    await vi.advanceTimersByTimeAsync(DEFAULT_TUNING.mediaProbeMs);
    await settle();
    // ...so media never broke: the same peer, no renegotiation.
    expect(d.peers).toEqual([peer]);
    expect(d.agent.socket.types()).toEqual([]);
    expect(d.state()).toMatchObject({ connectionStatus: 'connected', sessionId: 's1', reconnect: null, notice: null });
  });

  it('negotiates a fresh peer when the resumed agent no longer sends audio on the kept one', async () => {
    const d = drive();
    await connect(d);
    const peer = d.peer();
    d.agent.socket.drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    await settle();
    d.agent.socket.open();
    await settle();
    expect(d.peers).toEqual([peer]); // kept while probing
    await vi.advanceTimersByTimeAsync(DEFAULT_TUNING.mediaProbeMs);
    await settle();
    expect(peer.closed).toBe(true);
    expect(d.peers).toHaveLength(2);
    expect(d.agent.socket.types()).toEqual(['offer']);
    expect(d.state()).toMatchObject({ sessionId: 's1', media: 'connecting', connectionStatus: 'connecting' });
  });

  it('negotiates a fresh peer at once when the resumed session says its agent holds no media for it', async () => {
    const d = drive();
    await connect(d);
    const peer = d.peer();
    d.agent.socket.drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    await settle();
    d.agent.socket.open();
    await settle();
    // The agent's own words (peer_connections: {}), long before the media probe would decide.
    d.agent.socket.receive({ type: 'session', session: { id: 's1', history: [], peer_connections: {} } });
    await settle();
    expect(peer.closed).toBe(true);
    expect(d.peers).toHaveLength(2);
    expect(d.agent.socket.types()).toEqual(['offer']);
  });

  it('backs off exponentially up to the cap while the agent is down, then gives up', async () => {
    const d = drive({ backoff: { baseMs: 500, factor: 2, maxMs: 4000, jitter: 0.2, maxAttempts: 5 } });
    await connect(d);
    d.agent.down = true;
    d.agent.socket.drop(1006);
    for (let i = 0; i < 5; i += 1) await vi.advanceTimersByTimeAsync(5000);
    const delays = d.actions.flatMap((a) => (a.type === 'reconnect-scheduled' ? [a.delayMs] : []));
    expect(delays).toEqual([500, 1000, 2000, 4000, 4000]);
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'signaling-lost' });
    expect(d.peer().closed).toBe(true);
    expect(d.mic.stop).toHaveBeenCalled();
  });

  it('starts a new session when the agent restarted and forgot the old one, and says so', async () => {
    const d = drive();
    await connect(d);
    d.agent.socket.receive({ type: 'transcript', text: 'hello', final: true });
    const oldPeer = d.peer();
    d.agent.down = true;
    d.agent.socket.drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    d.agent.down = false;
    d.agent.forgetSessions();
    await vi.advanceTimersByTimeAsync(1000);
    await settle();
    expect(d.agent.requests).toEqual([
      'POST /v2/sessions',
      'GET /v2/sessions/s1',
      'GET /v2/sessions/s1',
      'POST /v2/sessions',
    ]);
    expect(d.state()).toMatchObject({ sessionId: 's2', notice: SESSION_REPLACED_NOTICE });
    expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s2');
    d.agent.socket.open();
    await settle();
    expect(oldPeer.closed).toBe(true);
    expect(d.peers).toHaveLength(2);
    expect(d.agent.socket.types()).toEqual(['offer']);
    // The history on screen stays; the new session starts empty on the agent.
    d.agent.socket.receive({ type: 'session', session: { id: 's2', history: [] } });
    expect(d.state().history.map((t) => t.text)).toEqual(['hello']);
  });

  it('keeps trying to replace a lost session while new ones are refused for a while', async () => {
    const d = drive();
    await connect(d);
    d.agent.forgetSessions();
    d.agent.refuse = { status: 429, retryAfter: 1 };
    d.agent.socket.drop(4404);
    await settle();
    // The agent's Retry-After (1 s) wins over the first backoff step (0.5 s).
    expect(d.state()).toMatchObject({ connectionStatus: 'connecting', reconnect: { attempt: 1, delayMs: 1000 } });
    d.agent.refuse = null;
    await vi.advanceTimersByTimeAsync(999);
    expect(d.agent.requests.filter((r) => r === 'POST /v2/sessions')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(d.state()).toMatchObject({ sessionId: 's2', notice: SESSION_REPLACED_NOTICE });
  });

  it('treats close code 4404 as a lost session and 4409 as taken over elsewhere', async () => {
    const d = drive();
    await connect(d);
    d.agent.socket.drop(4404);
    await settle();
    expect(d.state().sessionId).toBe('s2');

    d.agent.socket.open();
    await settle();
    d.agent.socket.drop(4409);
    await settle();
    expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'session-taken' });
    // The other window owns the session now; this one must not end it.
    expect(d.agent.requests.filter((r) => r.startsWith('DELETE'))).toEqual([]);
  });

  it('restarts ICE when the audio path fails, then rebuilds the peer if that does not help', async () => {
    const d = drive({ iceRestartTimeoutMs: 3000 });
    await connect(d);
    const first = d.peer();
    first.setState('failed');
    await settle();
    expect(d.state().media).toBe('restarting');
    expect(first.offers.at(-1)).toEqual({ iceRestart: true });
    expect(d.agent.socket.types().at(-1)).toBe('offer');
    await vi.advanceTimersByTimeAsync(3000);
    await settle();
    expect(first.closed).toBe(true);
    expect(d.peers).toHaveLength(2);
    d.agent.socket.receive(ANSWER);
    await settle();
    d.peer().setState('connected');
    expect(d.state().connectionStatus).toBe('connected');
  });

  it('gives ICE a grace period in "disconnected" before restarting it', async () => {
    const d = drive({ iceDisconnectedGraceMs: 2000 });
    await connect(d);
    const peer = d.peer();
    peer.setState('disconnected');
    await vi.advanceTimersByTimeAsync(1500);
    peer.setState('connected');
    await vi.advanceTimersByTimeAsync(2000);
    expect(peer.offers).toHaveLength(1);
  });

  it('drops a half-open socket that stopped answering pings', async () => {
    let now = 0;
    const d = drive({ keepaliveIntervalMs: 1000, keepaliveTimeoutMs: 1000 }, { now: () => now });
    await connect(d);
    now = 1000;
    await vi.advanceTimersByTimeAsync(1000);
    expect(d.agent.socket.types()).toContain('ping');
    now = 3500;
    await vi.advanceTimersByTimeAsync(1000);
    expect(d.state().reconnect).toMatchObject({ attempt: 1 });
  });

  it('renegotiates on a fresh peer when the agent rejects our description', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const d = drive();
    await d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    d.peer().rejectAnswer = true;
    d.agent.socket.receive(ANSWER);
    await settle();
    expect(d.peers).toHaveLength(2);
    expect(d.peers[0]?.closed).toBe(true);
    expect(d.agent.socket.types().filter((t) => t === 'offer')).toHaveLength(2);
    expect(warn).toHaveBeenCalledTimes(1);
  });
});

describe('VoiceSessionController: teardown', () => {
  it('stop ends the session on the agent, stops the mic, closes peer and socket, ignores late events', async () => {
    const d = drive();
    await connect(d);
    d.peer().remoteTrack();
    const socket = d.agent.socket;
    d.controller.stop();
    expect(socket.types().at(-1)).toBe('end');
    expect(socket.closedByClient).toMatchObject({ code: 1000 });
    expect(d.mic.stop).toHaveBeenCalled();
    expect(d.peer().closed).toBe(true);
    expect(d.played.at(-1)).toBeNull(); // agent audio detached
    expect(d.state()).toMatchObject({ connectionStatus: 'disconnected', processingStatus: 'idle', sessionId: null });
    socket.receive({ type: 'transcript', text: 'late', final: true });
    expect(d.state().history).toEqual([]);
  });

  it('deletes the session over HTTP when stopped while signaling is down', async () => {
    const d = drive();
    await d.controller.start();
    await settle();
    d.controller.stop();
    await settle();
    expect(d.agent.requests).toEqual(['POST /v2/sessions', 'DELETE /v2/sessions/s1']);
  });

  it('a stop during start discards the session that was still being created', async () => {
    const d = drive();
    const starting = d.controller.start();
    d.controller.stop();
    await starting;
    await settle();
    expect(d.agent.sockets).toHaveLength(0);
    expect(d.mic.stop).toHaveBeenCalled();
  });
});

/** The agent's close table as committed in the protocol schema (generated from its models). */
const TABLE = Object.entries(schema.$defs.CloseActions.properties).map(
  ([code, entry]) => [Number(code), (entry as { const: CloseAction }).const] as const,
);

describe('VoiceSessionController: every close code the agent sends, as docs/api.md says', () => {
  fakeTimersEach();

  it('holds the same table as the agent, and takes a code it does not list for a dropped network', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(9);
    for (const [code, action] of TABLE) expect(closeAction(code), String(code)).toBe(action);
    expect(closeAction(1006)).toBe('retry_later');
    expect(closeAction(1001)).toBe('retry_later');
  });

  it.each(TABLE)('close %i: %s', async (code, action) => {
    const d = drive();
    await connect(d);
    d.agent.socket.drop(code);
    await settle();
    const scheduled = d.actions.filter((a) => a.type === 'reconnect-scheduled');
    const deletes = d.agent.requests.filter((r) => r.startsWith('DELETE'));
    switch (action) {
      case 'stop':
        // Nothing to resume here: no reconnect, and the session is not ended from this side either.
        expect(scheduled).toEqual([]);
        expect(deletes).toEqual([]);
        await vi.advanceTimersByTimeAsync(10_000);
        expect(d.agent.sockets).toHaveLength(1);
        if (code === 1000) expect(d.state()).toMatchObject({ active: false, errorFatal: false, notice: SESSION_ENDED_NOTICE });
        else expect(d.state()).toMatchObject({ connectionStatus: 'error', errorCode: 'session-taken' });
        break;
      case 'reconnect':
        // The session is intact: the same id, at once.
        expect(scheduled).toEqual([{ type: 'reconnect-scheduled', attempt: 1, delayMs: 0 }]);
        await vi.advanceTimersByTimeAsync(0);
        await settle();
        expect(d.agent.sockets).toHaveLength(2);
        expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s1');
        break;
      case 'retry_later':
        expect(scheduled).toEqual([{ type: 'reconnect-scheduled', attempt: 1, delayMs: DEFAULT_TUNING.backoff.baseMs }]);
        await vi.advanceTimersByTimeAsync(DEFAULT_TUNING.backoff.baseMs);
        await settle();
        expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s1');
        break;
      case 'new_session':
        expect(d.state()).toMatchObject({ sessionId: 's2', notice: SESSION_REPLACED_NOTICE });
        expect(d.agent.socket.url).toBe('ws://agent.test/ws/v2/s2');
        break;
    }
  });
});

describe('VoiceSessionController: media stalls', () => {
  fakeTimersEach();

  /** A connected call whose agent audio flowed, then stopped; `clock` moves the controller's time. */
  async function stalled(): Promise<{ d: Driven; clock: (ms: number) => Promise<void> }> {
    let now = 0;
    const d = drive({}, { now: () => now });
    const clock = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += DEFAULT_TUNING.mediaWatchMs) {
        now += DEFAULT_TUNING.mediaWatchMs;
        await vi.advanceTimersByTimeAsync(DEFAULT_TUNING.mediaWatchMs);
      }
      await settle();
    };
    await connect(d);
    d.peer().packetsReceived = 50;
    await clock(500);
    return { d, clock };
  }

  it('says so as soon as the agent audio has stopped for the stall time, and counts it', async () => {
    const { d, clock } = await stalled();
    await clock(DEFAULT_TUNING.mediaStallMs - 250);
    expect(d.state().media).toBe('connected');
    await clock(500);
    expect(d.state()).toMatchObject({ media: 'stalled', mediaStalls: 1, connectionStatus: 'connecting' });
    expect(d.agent.socket.types()).toContain('ping');
    // The agent catches up by itself: nothing to renew.
    d.peer().packetsReceived += 10;
    await clock(250);
    expect(d.state()).toMatchObject({ media: 'connected', mediaStalls: 1, connectionStatus: 'connected' });
    expect(d.peers).toHaveLength(1);
  });

  it('restarts ICE when the stall lasts while the agent still answers on the socket', async () => {
    const { d, clock } = await stalled();
    await clock(DEFAULT_TUNING.mediaStallMs + 250);
    d.agent.socket.receive({ type: 'pong' });
    await clock(DEFAULT_TUNING.mediaRecoverMs + 250);
    expect(d.peer().offers.at(-1)).toEqual({ iceRestart: true });
    expect(d.state().media).toBe('restarting');
  });

  it('reconnects at once when neither audio nor anything else comes from the agent', async () => {
    const { d, clock } = await stalled();
    await clock(DEFAULT_TUNING.mediaStallMs + DEFAULT_TUNING.mediaRecoverMs + 500);
    expect(d.agent.sockets[0]?.closedByClient).not.toBeNull();
    expect(d.actions).toContainEqual({ type: 'reconnect-scheduled', attempt: 1, delayMs: 0 });
    expect(d.agent.sockets).toHaveLength(2);
  });

  it('renegotiates when the agent reports that it hears nothing from us', async () => {
    const { d } = await stalled();
    d.agent.socket.receive({ type: 'error', code: 'media_stalled', message: 'no audio from you' });
    await settle();
    expect(d.peer().offers.at(-1)).toEqual({ iceRestart: true });
    expect(d.state()).toMatchObject({ error: null, media: 'restarting' });
  });
});
