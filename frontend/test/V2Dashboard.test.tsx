import { act, fireEvent, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import {
  initialVoiceAgentState,
  voiceAgentReducer,
  type VoiceAgentAction,
  type VoiceAgentState,
} from '../src/hooks/voiceAgentReducer';
import V2Dashboard, { DashboardView, type DashboardViewProps } from '../src/pages/V2Dashboard';
import { settle } from './controller';
import { harness } from './fakes';

const stateAfter = (...actions: VoiceAgentAction[]): VoiceAgentState => actions.reduce(voiceAgentReducer, initialVoiceAgentState);
const live: VoiceAgentAction[] = [
  { type: 'start' },
  { type: 'session-ready', sessionId: 'abc123', replaced: false },
  { type: 'signaling', state: 'open' },
  { type: 'media', state: 'connected' },
];

function view(state: VoiceAgentState, extra: Partial<DashboardViewProps> = {}) {
  const props: DashboardViewProps = {
    state,
    micLevel: null,
    network: null,
    onToggle: vi.fn(),
    onRetry: vi.fn(),
    onDismiss: vi.fn(),
    onSendText: vi.fn(() => true),
    onInterrupt: vi.fn(),
    ...extra,
  };
  render(<DashboardView {...props} />);
  return props;
}

describe('DashboardView renders each state', () => {
  it('idle: offers to start, nothing to show yet', async () => {
    const props = view(initialVoiceAgentState);
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Not connected');
    const toggle = screen.getByRole('button', { name: 'Start conversation' });
    expect(toggle).toHaveAttribute('aria-pressed', 'false');
    expect(screen.getByRole('meter', { name: 'Microphone level' })).toHaveAttribute('aria-valuetext', 'Microphone off');
    expect(screen.getByRole('textbox', { name: 'Type a message to the agent' })).toBeDisabled();
    expect(screen.getByText(/Nothing said yet/)).toBeInTheDocument();
    await userEvent.click(toggle);
    expect(props.onToggle).toHaveBeenCalledTimes(1);
  });

  it('connecting: says what it is doing', () => {
    view(stateAfter({ type: 'start' }));
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Starting');
    view(stateAfter({ type: 'start' }, { type: 'session-ready', sessionId: 's', replaced: false }));
    expect(screen.getAllByTestId('connection-status')[1]).toHaveTextContent('Connecting');
  });

  it('connected and listening: session, level meter, network figures', () => {
    view(stateAfter(...live, { type: 'agent', message: { type: 'status', processing: 'listening' } }), {
      micLevel: 0.42,
      network: { rttMs: 12.4, jitterMs: 3, packetLossPct: 0, packetsReceived: 1, packetsLost: 0, inboundAudioEnergy: 0, inboundAudioLevel: null, bytesReceived: 2048, bytesSent: 0 },
    });
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Connected');
    expect(screen.getByRole('button', { name: 'End conversation' })).toHaveAttribute('aria-pressed', 'true');
    expect(screen.getByTestId('processing-status')).toHaveTextContent('Listening');
    expect(screen.getByTestId('session-id')).toHaveTextContent('abc123');
    expect(screen.getByRole('meter', { name: 'Microphone level' })).toHaveAttribute('aria-valuenow', '42');
    expect(screen.getByTestId('net-rtt')).toHaveTextContent('12 ms');
    expect(screen.getByTestId('net-loss')).toHaveTextContent('0.0 %');
    expect(screen.getByRole('textbox', { name: 'Type a message to the agent' })).toBeEnabled();
  });

  it('mid-turn: history, interim transcript, streaming reply, latency, interrupt', async () => {
    const state = stateAfter(
      ...live,
      { type: 'agent', message: { type: 'transcript', text: 'what time is it', final: true } },
      { type: 'agent', message: { type: 'ai_response', text: 'It is noon.', final: true } },
      { type: 'agent', message: { type: 'metrics', turn: { stt_ms: 120, llm_first_token_ms: 30, tts_first_audio_ms: 80, voice_to_voice_ms: 1450 } } },
      { type: 'agent', message: { type: 'transcript', text: 'and tomor', final: false } },
      { type: 'agent', message: { type: 'ai_response', text: 'Tomorrow is', final: false } },
      { type: 'agent', message: { type: 'status', processing: 'speaking' } },
    );
    const props = view(state);
    const history = within(screen.getByRole('list', { name: 'Conversation history' }));
    expect(history.getAllByRole('listitem').map((li) => li.textContent)).toEqual(['Youwhat time is it', 'AgentIt is noon.']);
    expect(screen.getByTestId('interim-transcript')).toHaveTextContent('and tomor');
    expect(screen.getByTestId('streaming-reply')).toHaveTextContent('Tomorrow is');
    expect(screen.getByTestId('latency-v2v')).toHaveTextContent('1.45 s');
    expect(screen.getByTestId('processing-status')).toHaveTextContent('Speaking');
    await userEvent.click(screen.getByRole('button', { name: 'Interrupt' }));
    expect(props.onInterrupt).toHaveBeenCalledTimes(1);
  });

  it('latency: the heard figure first, the agent\'s account beside it; an interrupted turn counts', () => {
    view(
      stateAfter(
        ...live,
        { type: 'agent', message: { type: 'transcript', text: 'tell me a story', final: true } },
        { type: 'agent', message: { type: 'ai_response', text: 'Once upon a time there was a fox.', final: true } },
        { type: 'heard', ms: 712 },
        { type: 'agent', message: { type: 'ai_interrupted', text: 'Once upon a time...' } },
      ),
    );
    expect(screen.getByTestId('latency-heard')).toHaveTextContent('712 ms');
    expect(screen.getByTestId('latency-heard-median')).toHaveTextContent('712 ms');
    expect(screen.getByText('Median heard, 1 turn')).toBeInTheDocument();
    expect(screen.getByTestId('latency-v2v')).toHaveTextContent('--'); // no completed turn yet
    const history = within(screen.getByRole('list', { name: 'Conversation history' }));
    expect(history.getAllByRole('listitem').at(-1)).toHaveTextContent('Once upon a time... (interrupted)');
  });

  it('reconnecting: tells the user the session is kept', () => {
    view(stateAfter(...live, { type: 'signaling', state: 'closed' }, { type: 'reconnect-scheduled', attempt: 2, delayMs: 1000 }));
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Reconnecting');
    expect(screen.getByTestId('status-detail')).toHaveTextContent('Attempt 2 in 1.0 s; your session is kept.');
  });

  it('starting an agent: the pool was at zero, the page says so and keeps asking', () => {
    view(stateAfter({ type: 'start' }, { type: 'agent-starting', attempt: 3, delayMs: 2000 }));
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Starting an agent');
    expect(screen.getByTestId('status-detail')).toHaveTextContent('one is starting');
    expect(screen.getByTestId('status-detail')).toHaveTextContent('Asking again in 2 s.');
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('fatal error: an alert with a retry action', async () => {
    const props = view(stateAfter({ type: 'start' }, { type: 'fail', code: 'agent-unreachable', message: 'Cannot reach the voice agent at http://x.' }));
    const alert = screen.getByRole('alert');
    expect(alert).toHaveTextContent('Agent unreachable');
    expect(alert).toHaveTextContent('Cannot reach the voice agent');
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Stopped');
    await userEvent.click(within(alert).getByRole('button', { name: 'Try again' }));
    expect(props.onRetry).toHaveBeenCalledTimes(1);
  });

  it('microphone blocked: says how to allow it', () => {
    view(stateAfter({ type: 'start' }, { type: 'fail', code: 'mic-permission', message: 'Microphone access is blocked. Allow it.' }));
    expect(screen.getByRole('alert')).toHaveTextContent('Microphone blocked');
  });

  it('non-fatal agent error and new-session notice can be dismissed', async () => {
    const props = view(stateAfter(
      { type: 'start' },
      { type: 'session-ready', sessionId: 's2', replaced: true },
      { type: 'signaling', state: 'open' },
      { type: 'agent', message: { type: 'error', code: 'rate_limited', message: 'too many messages' } },
    ));
    expect(screen.getByRole('alert')).toHaveTextContent('too many messages');
    expect(screen.getByTestId('notice-banner')).toHaveTextContent('new session was started');
    const dismiss = screen.getAllByRole('button', { name: 'Dismiss message' });
    expect(dismiss).toHaveLength(2);
    const [first] = dismiss;
    if (first) await userEvent.click(first);
    expect(props.onDismiss).toHaveBeenCalled();
  });

  it('sends typed text with the keyboard and clears the field', async () => {
    const props = view(stateAfter(...live));
    const box = screen.getByRole('textbox', { name: 'Type a message to the agent' });
    await userEvent.type(box, 'hello{Enter}');
    expect(props.onSendText).toHaveBeenCalledWith('hello');
    expect(box).toHaveValue('');
  });
});

describe('V2Dashboard with the hook, against the fake agent', () => {
  it('ends the session when the page is left (pagehide)', async () => {
    const h = harness();
    render(<V2Dashboard baseUrl="http://agent.test" deps={h.deps} />);
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Start conversation' }));
      await settle();
    });
    await act(async () => {
      h.agent.socket.open();
      await settle();
    });
    act(() => {
      window.dispatchEvent(new Event('pagehide'));
    });
    expect(h.agent.socket.types().at(-1)).toBe('end');
    expect(h.mic.stop).toHaveBeenCalled();
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Not connected');
  });

  it('start -> connected -> transcript, and unmount releases mic, peer and socket', async () => {
    const h = harness();
    const { unmount } = render(<V2Dashboard baseUrl="http://agent.test" deps={h.deps} />);
    // Every step lets the controller's promises settle inside act, as React expects.
    const step = (fn: () => unknown) => act(async () => {
      await fn();
      await settle();
    });
    await step(() => fireEvent.click(screen.getByRole('button', { name: 'Start conversation' })));
    expect(h.agent.sockets).toHaveLength(1);
    await step(() => h.agent.socket.open());
    expect(h.peers).toHaveLength(1);
    await step(() => h.agent.socket.receive({ type: 'answer', sdp: 'v=0 a' }));
    await step(() => h.peer().setState('connected'));
    expect(screen.getByTestId('connection-status')).toHaveTextContent('Connected');
    await step(() => h.agent.socket.receive({ type: 'transcript', text: 'what time is it', final: true }));
    expect(screen.getByTestId('turn-user')).toHaveTextContent('what time is it');

    unmount();
    expect(h.mic.stop).toHaveBeenCalled();
    expect(h.peer().closed).toBe(true);
    expect(h.agent.socket.types().at(-1)).toBe('end');
    expect(h.agent.socket.closedByClient).not.toBeNull();
  });
});
