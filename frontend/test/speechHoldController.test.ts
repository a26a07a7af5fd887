import { describe, expect, it, vi } from 'vitest';
import type { SpeechHoldLike } from '../src/audio/speechHoldNode';
import { DEFAULT_TUNING } from '../src/hooks/sessionController';
import { ANSWER, connect, drive, fakeTimersEach, painted, settle, type Driven } from './controller';

/** The worklet's side as the test says: whether it can hold, and when its replay has caught up. */
class FakeHold implements SpeechHoldLike {
  readonly heldTrack = { kind: 'audio', id: 'held' } as unknown as MediaStreamTrack;
  listening: MediaStream | null = null;
  available = true;
  held = false;
  holds = 0;
  cancels = 0;
  caughtUp: (() => void) | null = null;
  listen(mic: MediaStream | null): void {
    this.listening = mic;
  }
  hold(): boolean {
    if (!this.available) return false;
    this.held = true;
    this.holds += 1;
    return true;
  }
  track(): MediaStreamTrack | null {
    return this.held ? this.heldTrack : null;
  }
  release(onCaughtUp: () => void): void {
    this.caughtUp = onCaughtUp;
  }
  cancel(): void {
    this.held = false;
    this.cancels += 1;
  }
  closed = false;
  close(): void {
    this.closed = true;
  }
}

async function call(hold: FakeHold): Promise<Driven> {
  const d = drive({}, { speechHold: () => hold });
  await connect(d);
  await painted();
  return d;
}

/** A draining agent moves the call: the notice, the 1012 close, the reconnect to the agent that took it. */
async function move(d: Driven): Promise<void> {
  d.agent.socket.receive({ type: 'error', code: 'session_moved', message: 'moved' });
  d.agent.socket.drop(1012);
  await settle();
  d.agent.socket.open();
  await settle();
}

const micOf = (d: Driven): MediaStreamTrack | undefined => d.mic.stream.getAudioTracks()[0];

describe('VoiceSessionController: the user speech across a move', () => {
  fakeTimersEach();

  it('taps the microphone once media is up on a call that does not move, which sends the microphone itself', async () => {
    const hold = new FakeHold();
    const d = drive({}, { speechHold: () => hold });
    await d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    d.agent.socket.receive(ANSWER);
    await settle();
    expect(hold.listening).toBe(null); // nothing in the connect sequence's way
    d.peer().setState('connected');
    expect(hold.listening).toBe(null); // nor between the connected state and its paint
    await painted();
    expect(hold.listening).toBe(d.mic.stream);
    expect(d.peer().tracks).toEqual([micOf(d)]);
    expect(hold.holds).toBe(0);
    d.controller.stop();
    expect(hold.closed).toBe(true);
  });

  it('holds from the notice, sends the held speech on the new peer once it is up, then the live microphone', async () => {
    const hold = new FakeHold();
    const d = await call(hold);
    const old = d.peer();
    await move(d);
    expect(hold.holds).toBe(1);
    d.agent.socket.receive({ type: 'session', session: { id: 's1', history: [], peer_connections: {} } });
    await settle();
    const fresh = d.peer();
    expect(fresh).not.toBe(old);
    expect(fresh.tracks).toEqual([hold.heldTrack]);
    expect(hold.caughtUp).toBe(null); // nothing replayed before the new media is up
    d.agent.socket.receive(ANSWER);
    await settle();
    fresh.setState('connected');
    expect(hold.caughtUp).not.toBe(null);
    expect(fresh.senders[0]?.track).toBe(hold.heldTrack);
    hold.caughtUp?.();
    await settle();
    expect(fresh.senders[0]?.track).toBe(micOf(d));
    // Nothing is left to time out later and swap tracks again.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(fresh.senders[0]?.track).toBe(micOf(d));
  });

  it('holds on a 1012 close that came without its notice', async () => {
    const hold = new FakeHold();
    const d = await call(hold);
    d.agent.socket.drop(1012);
    expect(hold.holds).toBe(1);
  });

  it('goes back to the live microphone when the new media is not up in time', async () => {
    const hold = new FakeHold();
    const d = await call(hold);
    await move(d);
    d.agent.socket.receive({ type: 'session', session: { id: 's1', history: [], peer_connections: {} } });
    await settle();
    const fresh = d.peer();
    expect(fresh.senders[0]?.track).toBe(hold.heldTrack);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(fresh.senders[0]?.track).toBe(micOf(d));
    expect(hold.held).toBe(false);
  });

  it('goes back to the live microphone when a replay never catches up', async () => {
    const hold = new FakeHold();
    const d = await call(hold);
    await move(d);
    d.agent.socket.receive({ type: 'session', session: { id: 's1', history: [], peer_connections: {} } });
    d.agent.socket.receive(ANSWER);
    await settle();
    d.peer().setState('connected');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(d.peer().senders[0]?.track).toBe(micOf(d));
    expect(hold.held).toBe(false);
  });

  it('lets the hold go when the media did not move: the microphone reached the agent all along', async () => {
    const hold = new FakeHold();
    const d = await call(hold);
    const peer = d.peer();
    await move(d);
    peer.packetsReceived += 75;
    await vi.advanceTimersByTimeAsync(DEFAULT_TUNING.mediaProbeMs);
    await settle();
    expect(d.peers).toEqual([peer]);
    expect(hold.held).toBe(false);
    expect(peer.tracks).toEqual([micOf(d)]);
  });

  it('sends the microphone on the new peer when nothing could be held', async () => {
    const hold = new FakeHold();
    hold.available = false;
    const d = await call(hold);
    await move(d);
    d.agent.socket.receive({ type: 'session', session: { id: 's1', history: [], peer_connections: {} } });
    await settle();
    expect(d.peer().tracks).toEqual([micOf(d)]);
  });
});
