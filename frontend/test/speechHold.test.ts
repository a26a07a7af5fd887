import { describe, expect, it } from 'vitest';
import { SpeechHold, type SpeechHoldTuning } from '../src/audio/speechHold';

// 1 kHz keeps the numbers readable: 1 sample per ms.
const RATE = 1000;
const TUNING: SpeechHoldTuning = {
  preRollMs: 20,
  maxHeldMs: 100,
  silenceRms: 0.01,
  frameMs: 5,
  pauseMs: 10,
  skipPerBlock: 100,
  maxReplayMs: 1000,
};
const BLOCK = 4;

/** A block whose samples all carry `value` (0: silence; a positive value stands for speech, tagged). */
const block = (value: number): Float32Array => new Float32Array(BLOCK).fill(value);

function pullAll(hold: SpeechHold, blocks: number): { sent: number[]; caughtUpAt: number | null } {
  const sent: number[] = [];
  let caughtUpAt: number | null = null;
  const out = new Float32Array(BLOCK);
  for (let i = 0; i < blocks && caughtUpAt === null; i += 1) {
    if (hold.pull(out)) caughtUpAt = i;
    sent.push(...out);
  }
  return { sent, caughtUpAt };
}

describe('SpeechHold', () => {
  it('sends nothing of its own while live: the page sends the microphone itself', () => {
    const hold = new SpeechHold(RATE, TUNING);
    hold.push(block(0.5));
    const out = new Float32Array(BLOCK).fill(9);
    expect(hold.pull(out)).toBe(false);
    expect([...out]).toEqual([0, 0, 0, 0]);
    expect(hold.state).toBe('live');
    expect(hold.behind).toBe(BLOCK);
  });

  it('keeps only the pre-roll while live', () => {
    const hold = new SpeechHold(RATE, TUNING);
    for (let i = 0; i < 20; i += 1) hold.push(block(0.5));
    expect(hold.behind).toBe(20);
  });

  it('sends silence while holding, then the pre-roll and all that was said, in order', () => {
    const hold = new SpeechHold(RATE, TUNING);
    for (let i = 1; i <= 10; i += 1) hold.push(block(i / 100)); // 40 ms before the notice: 20 kept
    hold.hold();
    const out = new Float32Array(BLOCK);
    for (let i = 11; i <= 15; i += 1) {
      hold.push(block(i / 100));
      expect(hold.pull(out)).toBe(false);
      expect([...out]).toEqual([0, 0, 0, 0]);
    }
    hold.release();
    const { sent, caughtUpAt } = pullAll(hold, 100);
    const expected = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15].flatMap((v) => [v, v, v, v].map((x) => x / 100));
    expect(sent.map((x) => Math.round(x * 100))).toEqual(expected.map((x) => Math.round(x * 100)));
    expect(caughtUpAt).toBe(9);
    expect(hold.state).toBe('live');
  });

  it('follows the microphone with the delay while speech goes on, and skips silence to catch up', () => {
    const hold = new SpeechHold(RATE, TUNING);
    hold.hold();
    for (let i = 0; i < 10; i += 1) hold.push(block(0.5)); // 40 ms of speech held
    hold.release();
    const out = new Float32Array(BLOCK);
    const sent: number[] = [];
    // Speech goes on for 40 ms: every block sent is speech, the delay stays.
    for (let i = 0; i < 10; i += 1) {
      hold.push(block(0.6));
      expect(hold.pull(out)).toBe(false);
      sent.push(...out);
    }
    expect(sent.every((x) => x > 0.4)).toBe(true);
    expect(hold.behind).toBe(40);
    // Then the user pauses: the held speech still goes out whole, the pause is what is skipped.
    let caughtUp = false;
    let speech = 0;
    for (let i = 0; i < 40 && !caughtUp; i += 1) {
      hold.push(block(0));
      caughtUp = hold.pull(out);
      speech += [...out].filter((x) => x > 0.4).length;
    }
    expect(caughtUp).toBe(true);
    expect(speech).toBe(40);
    expect(hold.skipped).toBeGreaterThan(0);
    expect(hold.state).toBe('live');
  });

  it('catches up in the first silence at a browser\'s sizes (128-sample blocks, 10 ms frames at 48 kHz)', () => {
    const hold = new SpeechHold(48_000);
    hold.hold();
    const render = (value: number): Float32Array => new Float32Array(128).fill(value);
    for (let i = 0; i < 300; i += 1) hold.push(render(i % 2 === 0 ? 0.3 : -0.3)); // 0.8 s of speech held
    hold.release();
    const out = new Float32Array(128);
    let speech = 0;
    let pulls = 0;
    for (let i = 0; i < 1000; i += 1) {
      hold.push(render(i < 200 ? 0.3 : 0)); // the user speaks on for 0.53 s, then pauses
      speech += out.filter((x) => x !== 0).length;
      pulls += 1;
      if (hold.pull(out)) break;
    }
    speech += out.filter((x) => x !== 0).length;
    // Every sample of speech went out once, and the pause ended the delay at once.
    expect(speech).toBe(500 * 128);
    // The 0.8 s of delay went in the pause, at up to 8 frames skipped per block sent.
    expect(pulls).toBeGreaterThan(500);
    expect(pulls).toBeLessThan(520);
    expect(hold.state).toBe('live');
  });

  it('skips no quiet shorter than a pause: the words stay whole', () => {
    const hold = new SpeechHold(48_000);
    hold.hold();
    const render = (value: number): Float32Array => new Float32Array(128).fill(value);
    // Speech with a 64 ms quiet inside (a stop consonant's closure), all held.
    for (let i = 0; i < 100; i += 1) hold.push(render(i >= 40 && i < 64 ? 0 : 0.3));
    hold.release();
    const out = new Float32Array(128);
    let quietSent = 0;
    for (let i = 0; i < 100; i += 1) {
      hold.push(render(0.3)); // the user speaks on
      hold.pull(out);
      if (out.every((x) => x === 0)) quietSent += 1;
    }
    expect(quietSent).toBe(24);
    expect(hold.skipped).toBe(0);
  });

  it('keeps at most maxHeldMs: the oldest goes', () => {
    const hold = new SpeechHold(RATE, TUNING);
    hold.hold();
    for (let i = 0; i < 30; i += 1) hold.push(block(i < 5 ? 0.1 : 0.5));
    expect(hold.behind).toBe(100);
    expect(hold.dropped).toBe(20);
    hold.release();
    const { sent } = pullAll(hold, 100);
    expect(sent.some((x) => Math.abs(x - 0.1) < 1e-6)).toBe(false);
  });

  it('gives up a replay that never catches up (the user talks on), so the live microphone goes again', () => {
    const hold = new SpeechHold(RATE, { ...TUNING, maxReplayMs: 40 });
    hold.hold();
    for (let i = 0; i < 5; i += 1) hold.push(block(0.5));
    hold.release();
    const out = new Float32Array(BLOCK);
    let caughtUp = false;
    let pulls = 0;
    while (!caughtUp && pulls < 100) {
      hold.push(block(0.5));
      caughtUp = hold.pull(out);
      pulls += 1;
    }
    expect(pulls).toBe(10);
    expect(hold.state).toBe('live');
  });

  it('cancel goes live at once, what was held discarded', () => {
    const hold = new SpeechHold(RATE, TUNING);
    hold.hold();
    for (let i = 0; i < 20; i += 1) hold.push(block(0.5));
    hold.cancel();
    expect(hold.state).toBe('live');
    expect(hold.behind).toBe(20);
    hold.release(); // not holding: nothing to release
    expect(hold.state).toBe('live');
  });
});
