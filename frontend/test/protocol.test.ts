import { describe, expect, it } from 'vitest';
import { ApiError, createSession, deleteSession, sessionExists, toSessionInfo } from '../src/api/client';
import { backoffDelay, DEFAULT_BACKOFF } from '../src/hooks/backoff';
import { agentBaseUrl, signalingUrl } from '../src/config';
import { encodeClientMessage, parseAgentMessage } from '../src/signaling/messages';
import { rmsToMeter, smoothLevel } from '../src/audio/level';

describe('parseAgentMessage', () => {
  it('accepts every agent event docs/api.md lists, and the reserved offer', () => {
    const frames = [
      { type: 'session', session: { id: 's1' } },
      { type: 'answer', sdp: 'v=0' },
      { type: 'offer', sdp: 'v=0' },
      { type: 'ice-candidate', candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 },
      { type: 'status', processing: 'speaking' },
      { type: 'transcript', text: 'hi', final: true },
      { type: 'ai_response', text: 'hello', final: false },
      { type: 'metrics', turn: { stt_ms: 1, llm_first_token_ms: 2, tts_first_audio_ms: 3, voice_to_voice_ms: 4 } },
      { type: 'error', code: 'invalid_json', message: 'frame is not valid JSON' },
      { type: 'pong', ts: 1 },
    ];
    for (const frame of frames) {
      const parsed = parseAgentMessage(JSON.stringify(frame));
      expect(parsed, frame.type).toMatchObject({ ok: true, message: { type: frame.type } });
    }
  });

  it('normalises optional fields instead of trusting them', () => {
    expect(parseAgentMessage('{"type":"ice-candidate","candidate":""}')).toEqual({
      ok: true,
      message: { type: 'ice-candidate', candidate: null, sdpMid: null, sdpMLineIndex: null },
    });
    expect(parseAgentMessage('{"type":"metrics","turn":{"stt_ms":"fast"}}')).toMatchObject({
      ok: true,
      message: { turn: { stt_ms: null, voice_to_voice_ms: null } },
    });
    expect(parseAgentMessage('{"type":"transcript","text":"a"}')).toMatchObject({ message: { final: false } });
    expect(parseAgentMessage('{"type":"error"}')).toMatchObject({ message: { code: 'error' } });
  });

  it('rejects malformed frames with a reason', () => {
    const bad: unknown[] = [new ArrayBuffer(2), 'nope', '[]', '{"type":1}', '{"type":"x"}', '{"type":"answer"}',
      '{"type":"status","processing":"x"}', '{"type":"transcript"}', '{"type":"metrics"}', '{"type":"session"}'];
    for (const raw of bad) expect(parseAgentMessage(raw)).toMatchObject({ ok: false });
  });

  it('encodes client messages as JSON text', () => {
    expect(JSON.parse(encodeClientMessage({ type: 'text', text: 'hi' }))).toEqual({ type: 'text', text: 'hi' });
  });
});

describe('API client', () => {
  const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
    async () => new Response(JSON.stringify(body), { status, headers });

  it('creates a session and narrows the body', async () => {
    const info = await createSession(json({ id: 's1', ws_url: 'ws://a/ws/v2/s1', ice_servers: [{ urls: ['stun:a'] }, 3], expires_at: 'x' }, 201), 'http://a');
    expect(info).toEqual({ id: 's1', ws_url: 'ws://a/ws/v2/s1', ice_servers: [{ urls: ['stun:a'] }], expires_at: 'x' });
    expect(() => toSessionInfo({ ws_url: 'x' })).toThrow(ApiError);
  });

  it('classifies failures: unreachable, busy with Retry-After, other HTTP errors', async () => {
    await expect(createSession(async () => Promise.reject(new TypeError('Failed to fetch')), 'http://a')).rejects.toMatchObject({ kind: 'unreachable' });
    await expect(createSession(json({ detail: 'full' }, 503, { 'Retry-After': '5' }), 'http://a')).rejects.toMatchObject({ kind: 'busy', retryAfterS: 5 });
    // The operator's waker: the pool is at zero agents and one is starting.
    await expect(
      createSession(json({ detail: 'starting an agent', code: 'agent_starting' }, 503, { 'Retry-After': '2' }), 'http://a'),
    ).rejects.toMatchObject({ kind: 'starting', retryAfterS: 2 });
    await expect(createSession(json({ detail: 'slow down' }, 429, { 'Retry-After': '3' }), 'http://a')).rejects.toMatchObject({ kind: 'rate-limited', retryAfterS: 3 });
    await expect(createSession(json({ detail: 'missing or invalid bearer token' }, 401), 'http://a')).rejects.toMatchObject({ kind: 'unauthorized' });
    await expect(createSession(json({ detail: 'boom' }, 500), 'http://a')).rejects.toMatchObject({ kind: 'http', status: 500 });
  });

  it('tells an existing session from a gone one', async () => {
    expect(await sessionExists(json({ id: 's1' }), 'http://a', 's1')).toBe(true);
    expect(await sessionExists(json({ detail: 'no such session' }, 404), 'http://a', 's1')).toBe(false);
    await expect(sessionExists(json({}, 500), 'http://a', 's1')).rejects.toBeInstanceOf(ApiError);
  });

  it('deletes best effort, never throwing', async () => {
    await expect(deleteSession(async () => Promise.reject(new Error('down')), 'http://a', 's1')).resolves.toBeUndefined();
  });
});

describe('backoff, URLs, level meter', () => {
  it('grows exponentially with jitter inside the bounds and a cap', () => {
    const mid = (n: number) => backoffDelay(n, DEFAULT_BACKOFF, () => 0.5);
    expect([1, 2, 3, 4, 5, 6, 10].map(mid)).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
    expect(backoffDelay(1, DEFAULT_BACKOFF, () => 0)).toBe(400);
    expect(backoffDelay(1, DEFAULT_BACKOFF, () => 0.999999)).toBe(600);
  });

  it('builds signaling URLs from the agent\'s ws_url or the base', () => {
    expect(signalingUrl('http://127.0.0.1:8000', 'a b')).toBe('ws://127.0.0.1:8000/ws/v2/a%20b');
    expect(signalingUrl('https://voice.example', 's1', '/ws/v2/s1')).toBe('wss://voice.example/ws/v2/s1');
    expect(signalingUrl('http://x', 's1', 'ws://y:1/ws/v2/s1')).toBe('ws://y:1/ws/v2/s1');
    expect(agentBaseUrl(' http://agent:8000// ', 'http://page')).toBe('http://agent:8000');
    expect(agentBaseUrl(undefined, 'http://page')).toBe('http://page');
  });

  it('maps RMS to a dB-scaled meter with fast attack and slow release', () => {
    expect(rmsToMeter(0)).toBe(0);
    expect(rmsToMeter(1)).toBe(1);
    expect(rmsToMeter(0.001)).toBeCloseTo(0, 5);
    expect(rmsToMeter(0.1)).toBeCloseTo(2 / 3, 5);
    expect(smoothLevel(0.2, 0.8)).toBe(0.8);
    expect(smoothLevel(0.8, 0)).toBeCloseTo(0.68, 5);
  });
});
