import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HEARD_TUNING,
  HELD_SILENCE_BLOCKS,
  HeardDetector,
  HeardReporter,
  type HeardTurn,
  UnheardCounter,
} from '../src/audio/heard';

const BLOCK = 128 / 48_000;
const SPEECH = 0.1; // -20 dBFS
const ROOM = 1e-4; // -80 dBFS
const VOICE = 0.05;

/** Synthetic render blocks: each segment is [seconds, mic RMS, remote RMS]. */
function feed(detector: HeardDetector, segments: [number, number, number][], start = 0): HeardTurn[] {
  const turns: HeardTurn[] = [];
  let t = start;
  for (const [seconds, mic, remote] of segments) {
    const end = t + seconds;
    for (; t < end - 1e-9; t += BLOCK) {
      const turn = detector.block(t, BLOCK, mic, remote);
      if (turn) turns.push(turn);
    }
  }
  return turns;
}

describe('HeardDetector', () => {
  it('times the end of speech to the first audible reply block, on the blocks own clock', () => {
    const turns = feed(new HeardDetector(), [
      [0.5, ROOM, 0],
      [1.2, SPEECH, 0],
      [0.72, ROOM, 0],
      [1.0, ROOM, VOICE],
    ]);
    expect(turns).toHaveLength(1);
    const [turn] = turns;
    expect(turn?.speechEnd).toBeCloseTo(1.7, 2);
    expect(turn?.heardAt).toBeCloseTo(2.42, 2);
    expect(turn?.ms).toBeCloseTo(720, -1);
  });

  it('takes the hangover: a pause inside an utterance does not end it', () => {
    const turns = feed(new HeardDetector(), [
      [0.6, SPEECH, 0],
      [DEFAULT_HEARD_TUNING.hangoverS * 0.8, ROOM, 0],
      [0.4, SPEECH, 0],
      [0.7, ROOM, 0],
      [0.2, ROOM, VOICE],
    ]);
    expect(turns.map((t) => Math.round(t.ms / 10) * 10)).toEqual([700]);
  });

  it('a reply that starts inside the hangover (the turn taken on a shorter silence) is timed, not lost', () => {
    const quiet = DEFAULT_HEARD_TUNING.hangoverS * 0.6;
    const turns = feed(new HeardDetector(), [
      [0.8, SPEECH, 0],
      [quiet, ROOM, 0],
      [0.5, ROOM, VOICE],
      [0.5, ROOM, 0],
    ]);
    expect(turns).toHaveLength(1);
    expect(turns[0]?.speechEnd).toBeCloseTo(0.8, 2);
    expect(turns[0]?.ms).toBeCloseTo(quiet * 1000, -1);
  });

  it('a reply over speech still going (the mic loud in the same block) ends nothing', () => {
    const turns = feed(new HeardDetector(), [
      [0.8, SPEECH, 0],
      [0.3, SPEECH, VOICE],
      [0.2, ROOM, 0],
    ]);
    expect(turns).toEqual([]);
  });

  it('counts nothing for a click shorter than speech, nor a reply with no speech before it', () => {
    const turns = feed(new HeardDetector(), [
      [0.02, SPEECH, 0],
      [0.8, ROOM, 0],
      [0.5, ROOM, VOICE],
    ]);
    expect(turns).toEqual([]);
  });

  it('reports once per utterance: the pauses between the reply sentences are not new replies', () => {
    const turns = feed(new HeardDetector(), [
      [0.8, SPEECH, 0],
      [0.6, ROOM, 0],
      [0.8, ROOM, VOICE],
      [0.15, ROOM, 0],
      [0.8, ROOM, VOICE],
    ]);
    expect(turns).toHaveLength(1);
  });

  it('a barge-in: the reply playing through the end of speech is not the answer, the next one is', () => {
    const turns = feed(new HeardDetector(), [
      [0.8, SPEECH, 0],
      [0.6, ROOM, 0],
      [1.0, ROOM, VOICE], // reply 1 (heard: 600 ms)
      [0.8, SPEECH, VOICE], // the user speaks over it ...
      [0.4, ROOM, VOICE], // ... and it plays on past the end of their speech
      [0.3, ROOM, 0],
      [0.5, ROOM, VOICE], // reply 2, 700 ms after the end of the barge-in
    ]);
    expect(turns.map((t) => Math.round(t.ms / 10) * 10)).toEqual([600, 700]);
  });

  it('forgets a waiting utterance on reset', () => {
    const detector = new HeardDetector();
    feed(detector, [
      [0.8, SPEECH, 0],
      [0.5, ROOM, 0],
    ]);
    detector.reset();
    expect(feed(detector, [[0.5, ROOM, VOICE]], 1.3)).toEqual([]);
  });
});

const turn = (speechEnd: number, heardAt: number): HeardTurn => ({
  speechEnd,
  heardAt,
  ms: (heardAt - speechEnd) * 1000,
});

describe('HeardReporter', () => {
  it('reports once per reply, whichever of the status and the audio comes first', () => {
    const sent: number[] = [];
    const reporter = new HeardReporter((t) => sent.push(Math.round(t.ms)));
    reporter.replyStarted(2.3);
    reporter.heard(turn(1.7, 2.4));
    reporter.heard(turn(1.7, 2.9)); // nothing new for the same reply
    reporter.heard(turn(3.0, 3.6)); // audio of a later turn, before its status
    reporter.replyStarted(3.65);
    expect(sent).toEqual([700, 600]);
  });

  it('an interrupted reply counts like any other, and the barge-in that cut it gets its own report', () => {
    const sent: number[] = [];
    const reporter = new HeardReporter((t) => sent.push(Math.round(t.ms)));
    reporter.replyStarted(2.0);
    reporter.heard(turn(1.4, 2.05));
    reporter.replyStarted(4.6); // the reply to the barge-in
    reporter.heard(turn(3.9, 4.65));
    expect(sent).toEqual([650, 750]);
  });

  it('never reports speech that no reply answered (a backchannel, an echo) nor a reply that was not heard', () => {
    const sent: number[] = [];
    const reporter = new HeardReporter((t) => sent.push(Math.round(t.ms)));
    reporter.replyStarted(2.0);
    reporter.heard(turn(1.4, 2.05));
    reporter.heard(turn(2.5, 2.9)); // speech during the reply, then its next sentence
    reporter.replyStarted(6.0); // a typed turn's reply: that audio was long before it
    reporter.heard(turn(2.5, 2.9));
    reporter.replyStarted(8.0);
    expect(sent).toEqual([650]);
  });

  it('forgets everything on reset', () => {
    const sent: number[] = [];
    const reporter = new HeardReporter((t) => sent.push(t.ms));
    reporter.replyStarted(2.0);
    reporter.reset();
    reporter.heard(turn(1.4, 2.05));
    expect(sent).toEqual([]);
  });
});

describe('UnheardCounter', () => {
  it('counts the reply arriving after the mute up to the agent held silence, gaps in words included', () => {
    const counter = new UnheardCounter(1.0);
    const results: number[] = [];
    let t = 0.9;
    const run = (seconds: number, rms: number): void => {
      for (const end = t + seconds; t < end - 1e-9; t += BLOCK) {
        const ms = counter.block(t, BLOCK, rms);
        if (ms !== null) results.push(ms);
      }
    };
    run(0.1 + 0.05, VOICE); // before the mute it was heard; 50 ms after it were not
    run(0.02, ROOM); // a gap inside a word, shorter than the held silence
    run(0.03, VOICE);
    run(HELD_SILENCE_BLOCKS * BLOCK * 3, 0); // the held silence
    expect(results).toHaveLength(1);
    // 100 ms, give or take the blocks each stretch ends on.
    expect(results[0]).toBeGreaterThan(99);
    expect(results[0]).toBeLessThan(100 + 3 * BLOCK * 1000);
    expect(counter.counted()).toBe(results[0]);
  });
});
