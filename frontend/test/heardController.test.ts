import { describe, expect, it, vi } from 'vitest';
import type { HeardTurn } from '../src/audio/heard';
import type { HeardMeterLike } from '../src/audio/heardMeter';
import { drive, settle, type Driven } from './controller';

/** The page's audio clock and what the meter hears, set by the test. */
class FakeMeter implements HeardMeterLike {
  onTurn: ((turn: HeardTurn) => void) | null = null;
  clock = 0;
  listening: [MediaStream | null, MediaStream | null] = [null, null];
  closed = false;
  prepare(): void {}
  listen(mic: MediaStream | null, remote: MediaStream | null): void {
    this.listening = [mic, remote];
  }
  now(): number | null {
    return this.clock;
  }
  close(): void {
    this.closed = true;
  }
  silenced = false;
  unheardMs: number | null = 85;
  silence(): void {
    this.silenced = true;
  }
  unsilence(): void {
    this.silenced = false;
  }
  unheard(): Promise<number | null> {
    return Promise.resolve(this.unheardMs);
  }
  hear(speechEnd: number, heardAt: number): void {
    this.onTurn?.({ speechEnd, heardAt, ms: (heardAt - speechEnd) * 1000 });
  }
}

async function call(): Promise<{ d: Driven; meter: FakeMeter }> {
  const meter = new FakeMeter();
  const d = drive({}, { heardMeter: () => meter });
  await d.controller.start();
  await settle();
  d.agent.socket.open();
  await settle();
  return { d, meter };
}

const speaking = (d: Driven, meter: FakeMeter, at: number): void => {
  meter.clock = at;
  d.agent.socket.receive({ type: 'status', processing: 'speaking' });
};

describe('VoiceSessionController: what the user hears', () => {
  it('taps the microphone at once, reports each reply once as client_metrics, and shows it', async () => {
    const { d, meter } = await call();
    expect(meter.listening[0]).toBe(d.mic.stream);

    speaking(d, meter, 2.3);
    meter.hear(1.7, 2.42);
    meter.hear(1.7, 2.9);
    d.agent.socket.receive({ type: 'status', processing: 'listening' });
    // The next reply was interrupted by the user (a barge-in): it counts all the same.
    speaking(d, meter, 5.0);
    meter.hear(4.4, 5.05);
    d.agent.socket.receive({ type: 'ai_interrupted', text: 'Well...' });
    d.agent.socket.receive({ type: 'status', processing: 'listening' });

    const reports = d.agent.socket.sent.filter((m) => m.type === 'client_metrics');
    expect(reports).toEqual([
      { type: 'client_metrics', voice_to_voice_ms: 720 },
      { type: 'client_metrics', voice_to_voice_ms: 650 },
    ]);
    expect(d.state().heardMs).toEqual([720, 650]);
  });

  it('sends nothing for speech no reply answered, nor an impossible figure', async () => {
    const { d, meter } = await call();
    speaking(d, meter, 40.0);
    meter.hear(3.0, 40.1); // 37 s: more than the agent takes
    meter.hear(40.5, 40.9); // spoken over the reply that was already playing
    expect(d.agent.socket.sent.filter((m) => m.type === 'client_metrics')).toEqual([]);
    expect(d.state().heardMs).toEqual([]);
  });

  it('silences the agent at its hold, says how much was not heard, and plays again at the resume', async () => {
    const { d, meter } = await call();
    speaking(d, meter, 2.0);
    d.agent.socket.receive({ type: 'playback', state: 'held', turn: 3 });
    expect(meter.silenced).toBe(true);
    await settle();
    expect(d.agent.socket.sent.filter((m) => m.type === 'held')).toEqual([{ type: 'held', turn: 3, unheard_ms: 85 }]);
    d.agent.socket.receive({ type: 'playback', state: 'resumed', turn: 3 });
    expect(meter.silenced).toBe(false);
  });

  it('keeps a cut reply silent until the next reply speaks, and at most a second', async () => {
    vi.useFakeTimers();
    try {
      const { d, meter } = await call();
      d.agent.socket.receive({ type: 'playback', state: 'cut', turn: 1 });
      expect(meter.silenced).toBe(true);
      d.agent.socket.receive({ type: 'status', processing: 'listening' });
      expect(meter.silenced).toBe(true);
      d.agent.socket.receive({ type: 'status', processing: 'speaking' });
      expect(meter.silenced).toBe(false);
      d.agent.socket.receive({ type: 'playback', state: 'cut', turn: 2 });
      vi.advanceTimersByTime(999);
      expect(meter.silenced).toBe(true);
      vi.advanceTimersByTime(1);
      expect(meter.silenced).toBe(false);
      expect(d.agent.socket.sent.filter((m) => m.type === 'held')).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stops listening when the call ends and closes the meter on unmount', async () => {
    const { d, meter } = await call();
    d.controller.stop();
    expect(meter.listening).toEqual([null, null]);
    d.controller.dispose();
    expect(meter.closed).toBe(true);
  });
});
