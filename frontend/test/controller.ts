/** Runs a VoiceSessionController against the fakes and folds its actions through the real reducer. */
import { afterEach, beforeEach, vi } from 'vitest';
import { VoiceSessionController, DEFAULT_TUNING, type ControllerTuning, type MediaHandles } from '../src/hooks/sessionController';
import {
  initialVoiceAgentState,
  voiceAgentReducer,
  type VoiceAgentAction,
  type VoiceAgentState,
} from '../src/hooks/voiceAgentReducer';
import { harness, type Harness } from './fakes';

export const AGENT = 'http://agent.test';

export interface Driven extends Harness {
  controller: VoiceSessionController;
  actions: VoiceAgentAction[];
  media: MediaHandles[];
  state: () => VoiceAgentState;
  /** Action types in order, for asserting sequences. */
  kinds: () => string[];
}

export function drive(tuning: Partial<ControllerTuning> = {}, overrides: Parameters<typeof harness>[0] = {}): Driven {
  const h = harness(overrides);
  const actions: VoiceAgentAction[] = [];
  const media: MediaHandles[] = [];
  let state = initialVoiceAgentState;
  const controller = new VoiceSessionController(
    AGENT,
    h.deps,
    {
      dispatch: (action) => {
        actions.push(action);
        state = voiceAgentReducer(state, action);
      },
      media: (handles) => media.push(handles),
    },
    { ...DEFAULT_TUNING, ...tuning },
  );
  return {
    ...h,
    controller,
    actions,
    media,
    state: () => state,
    kinds: () => actions.map((a) => (a.type === 'agent' ? `agent:${a.message.type}` : a.type === 'signaling' || a.type === 'media' ? `${a.type}:${a.state}` : a.type)),
  };
}

/**
 * Lets pending promises (fake fetch, Response bodies, peer methods) settle, with timers faked or
 * not: a real macrotask turn when timers are real, a zero-length advance when they are fake.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) {
    if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0);
    else await new Promise<void>((resolve) => setTimeout(resolve, 0));
  }
}

export const ANSWER = { type: 'answer', sdp: 'v=0 agent-answer' };

/** Start, open the socket, answer the offer, connect ICE: the normal way into a conversation. */
export async function connect(d: Driven): Promise<void> {
  await d.controller.start();
  await settle();
  d.agent.socket.open();
  await settle();
  d.agent.socket.receive({ type: 'session', session: { id: d.state().sessionId, history: [] } });
  d.agent.socket.receive(ANSWER);
  await settle();
  d.peer().setState('connected');
}

/** The page has painted what it shows (an animation frame went by): what afterPaint waits for. */
export async function painted(): Promise<void> {
  await vi.advanceTimersByTimeAsync(20);
  await settle();
}

/** Fake timers for every test of the enclosing describe: only the timers, so the controller's
 * promise chains and the clocks it reads stay real (settle() relies on them). */
export function fakeTimersEach(): void {
  beforeEach(() => {
    vi.useFakeTimers({
      toFake: [
        'setTimeout',
        'clearTimeout',
        'setInterval',
        'clearInterval',
        'requestAnimationFrame',
        'cancelAnimationFrame',
      ],
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}
