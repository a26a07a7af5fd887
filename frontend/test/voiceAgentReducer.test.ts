import { describe, expect, it } from 'vitest';
import {
  initialVoiceAgentState,
  MAX_TURN_METRICS,
  mergeStreamingText,
  reconcileHistory,
  voiceAgentReducer,
  type VoiceAgentAction,
  type VoiceAgentState,
} from '../src/hooks/voiceAgentReducer';
import type { AgentMessage } from '../src/signaling/messages';

const run = (actions: VoiceAgentAction[], from: VoiceAgentState = initialVoiceAgentState): VoiceAgentState =>
  actions.reduce(voiceAgentReducer, from);
const agent = (message: AgentMessage): VoiceAgentAction => ({ type: 'agent', message });
const live: VoiceAgentAction[] = [
  { type: 'start' },
  { type: 'session-ready', sessionId: 's1', replaced: false },
  { type: 'signaling', state: 'open' },
  { type: 'media', state: 'connected' },
];

describe('voiceAgentReducer', () => {
  it('starts disconnected and idle, with no session, transcript, reply or error', () => {
    expect(initialVoiceAgentState).toMatchObject({
      connectionStatus: 'disconnected',
      processingStatus: 'idle',
      sessionId: null,
      transcript: '',
      interimTranscript: '',
      aiResponse: null,
      error: null,
      version: 'v2',
    });
  });

  it('is connected only when both signaling and media are up', () => {
    const steps = live.map((_, i) => run(live.slice(0, i + 1)).connectionStatus);
    expect(steps).toEqual(['connecting', 'connecting', 'connecting', 'connected']);
    expect(run([...live, { type: 'signaling', state: 'closed' }]).connectionStatus).toBe('connecting');
    expect(run([...live, { type: 'media', state: 'restarting' }]).connectionStatus).toBe('connecting');
  });

  it('replaces interim text and moves final text into the history', () => {
    const s = run([
      ...live,
      agent({ type: 'transcript', text: 'what', final: false }),
      agent({ type: 'transcript', text: 'what time', final: false }),
    ]);
    expect(s.interimTranscript).toBe('what time');
    const done = run([agent({ type: 'transcript', text: ' what time is it ', final: true })], s);
    expect(done).toMatchObject({ interimTranscript: '', transcript: 'what time is it' });
    expect(done.history).toEqual([{ id: 1, role: 'user', text: 'what time is it' }]);
    expect(run([agent({ type: 'transcript', text: '  ', final: true })], s).history).toEqual([]);
  });

  it('merges streamed replies given as snapshots or as deltas', () => {
    expect(mergeStreamingText('', 'It')).toBe('It');
    expect(mergeStreamingText('It', 'It is')).toBe('It is');
    expect(mergeStreamingText('It is', ' noon')).toBe('It is noon');
    const s = run([
      ...live,
      agent({ type: 'ai_response', text: 'It', final: false }),
      agent({ type: 'ai_response', text: ' is', final: false }),
    ]);
    expect(s).toMatchObject({ aiResponse: 'It is', aiResponseFinal: false });
    const done = run([agent({ type: 'ai_response', text: 'It is noon.', final: true })], s);
    expect(done.history.map((t) => t.text)).toEqual(['It is noon.']);
    // A new reply starts from scratch rather than appending to the previous one.
    const next = run([agent({ type: 'ai_response', text: 'Again', final: false })], done);
    expect(next.aiResponse).toBe('Again');
  });

  it('marks a streaming reply as interrupted when the user speaks or the link drops', () => {
    const streaming = run([...live, agent({ type: 'ai_response', text: 'It is no', final: false })]);
    const bargeIn = run([agent({ type: 'transcript', text: 'stop', final: true })], streaming);
    expect(bargeIn.history).toEqual([
      { id: 1, role: 'agent', text: 'It is no', interrupted: true },
      { id: 2, role: 'user', text: 'stop' },
    ]);
    const dropped = run([{ type: 'signaling', state: 'closed' }], streaming);
    expect(dropped.history[0]).toMatchObject({ interrupted: true });
  });

  it('shows an interrupted reply as the words that were played, marked interrupted', () => {
    const written = run([
      ...live,
      agent({ type: 'transcript', text: 'tell me a story', final: true }),
      agent({ type: 'ai_response', text: 'Once upon a time there was a fox.', final: true }),
    ]);
    const cut = run([agent({ type: 'ai_interrupted', text: 'Once upon a time...' })], written);
    expect(cut.history.map((t) => [t.role, t.text, t.interrupted ?? false])).toEqual([
      ['user', 'tell me a story', false],
      ['agent', 'Once upon a time...', true],
    ]);
    // Still streaming when it was cut: closed with what was heard, not with what was written.
    const streaming = run([...live, agent({ type: 'ai_response', text: 'Once upon a time there', final: false })]);
    const early = run([agent({ type: 'ai_interrupted', text: 'Once...' })], streaming);
    expect(early.history).toEqual([{ id: 1, role: 'agent', text: 'Once...', interrupted: true }]);
    expect(early.aiResponseFinal).toBe(true);
    // Nothing of it was heard: it is not kept, as the agent's history does not keep it.
    expect(run([agent({ type: 'ai_interrupted', text: '' })], written).history).toHaveLength(1);
    expect(run([agent({ type: 'ai_interrupted', text: '' })], streaming).history).toEqual([]);
    // No reply to cut (the user's turn is the last one): nothing changes.
    const asked = run([...live, agent({ type: 'transcript', text: 'hi', final: true })]);
    expect(run([agent({ type: 'ai_interrupted', text: 'Hel...' })], asked).history).toEqual(asked.history);
  });

  it('keeps each reply\'s heard voice to voice, the latest last, bounded', () => {
    const many = Array.from({ length: MAX_TURN_METRICS + 3 }, (_, i): VoiceAgentAction => ({ type: 'heard', ms: i }));
    const s = run([...live, ...many]);
    expect(s.heardMs).toHaveLength(MAX_TURN_METRICS);
    expect(s.heardMs.at(-1)).toBe(MAX_TURN_METRICS + 2);
  });

  it('follows the agent\'s processing status while active, idle otherwise', () => {
    for (const processing of ['listening', 'processing', 'speaking', 'idle'] as const) {
      expect(run([...live, agent({ type: 'status', processing })]).processingStatus).toBe(processing);
    }
    expect(run([agent({ type: 'status', processing: 'speaking' })]).processingStatus).toBe('idle');
    // While signaling is down nobody knows what the agent is doing: no stale "Speaking".
    const speaking = run([...live, agent({ type: 'status', processing: 'speaking' })]);
    expect(run([{ type: 'signaling', state: 'closed' }], speaking).processingStatus).toBe('idle');
  });

  it('keeps the last turn metrics, bounded', () => {
    const turn = { stt_ms: 1, llm_first_token_ms: 2, tts_first_audio_ms: 3, voice_to_voice_ms: 4 };
    const many = Array.from({ length: MAX_TURN_METRICS + 5 }, (_, i) => agent({ type: 'metrics', turn: { ...turn, stt_ms: i } }));
    const s = run([...live, ...many]);
    expect(s.turnMetrics).toHaveLength(MAX_TURN_METRICS);
    expect(s.turnMetrics.at(-1)?.stt_ms).toBe(MAX_TURN_METRICS + 4);
  });

  it('a fatal failure stops the conversation; retry (start) clears it', () => {
    const failed = run([...live, { type: 'fail', code: 'signaling-lost', message: 'gone' }]);
    expect(failed).toMatchObject({
      connectionStatus: 'error',
      processingStatus: 'error',
      active: false,
      error: 'gone',
      errorCode: 'signaling-lost',
    });
    const again = run([{ type: 'start' }], failed);
    expect(again).toMatchObject({ connectionStatus: 'connecting', error: null, errorCode: null });
  });

  it('a non-fatal agent error is shown and dismissable; stop keeps the history', () => {
    const warned = run([...live, agent({ type: 'error', code: 'rate_limited', message: 'slow down' })]);
    expect(warned).toMatchObject({ connectionStatus: 'connected', error: 'slow down', errorFatal: false });
    expect(run([{ type: 'dismiss' }], warned).error).toBeNull();
    const stopped = run([agent({ type: 'transcript', text: 'hi', final: true }), { type: 'stop' }], warned);
    expect(stopped).toMatchObject({ connectionStatus: 'disconnected', sessionId: null });
    expect(stopped.history).toHaveLength(1);
  });

  it('announces a replacement session', () => {
    const s = run([{ type: 'start' }, { type: 'session-ready', sessionId: 's2', replaced: true }]);
    expect(s.notice).toMatch(/new session was started/);
    expect(run([{ type: 'dismiss' }], s).notice).toBeNull();
  });

  it('ignores agent events while no conversation is active', () => {
    expect(run([agent({ type: 'transcript', text: 'x', final: true })])).toBe(initialVoiceAgentState);
  });
});

describe('reconcileHistory (resume after a dropped socket)', () => {
  const base = run([
    ...live,
    agent({ type: 'transcript', text: 'hello', final: true }),
    agent({ type: 'ai_response', text: 'Hi!', final: true }),
  ]);

  it('appends the turns the agent finished while we were away', () => {
    const s = reconcileHistory(base, [
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'what time is it' },
      { role: 'assistant', content: 'Noon.', interrupted: true },
    ]);
    expect(s.history.map((t) => [t.role, t.text, t.interrupted ?? false])).toEqual([
      ['user', 'hello', false],
      ['agent', 'Hi!', false],
      ['user', 'what time is it', false],
      ['agent', 'Noon.', true],
    ]);
    expect(new Set(s.history.map((t) => t.id)).size).toBe(4);
  });

  it('changes nothing when already in sync, unrelated, or malformed', () => {
    expect(reconcileHistory(base, [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'Hi!' }])).toBe(base);
    expect(reconcileHistory(base, [{ role: 'user', content: 'something else' }])).toBe(base);
    expect(reconcileHistory(base, 'nope')).toBe(base);
    expect(reconcileHistory(base, [{ role: 'system', content: 'prompt' }, null, { role: 'user' }])).toBe(base);
  });

  it('fills an empty page from the stored history (reload mid-conversation)', () => {
    const s = reconcileHistory(initialVoiceAgentState, [{ role: 'user', content: 'hello' }]);
    expect(s.history).toEqual([{ id: 1, role: 'user', text: 'hello' }]);
  });
});
