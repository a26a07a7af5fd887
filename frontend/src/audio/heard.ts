/**
 * Voice to voice as the user hears it (docs/frontend.md, "What the user hears"): from the end of
 * the user's speech on the microphone track to the first audible block of the agent's track, both
 * read off one AudioContext clock. The agent's own figure stops where its first reply frame enters
 * its track; network, jitter buffer and playout come after that, and only the page sees them.
 *
 * This file is the pure part: a detector fed render blocks (start time on the context clock and
 * RMS level of the microphone and of the agent's audio in the same quantum), and the rule that
 * reports at most one figure per reply the agent started. The worklet and the AudioContext that
 * feed it are heardMeter.ts.
 */

/** Levels and times of the detector, in dBFS and seconds. */
export interface HeardTuning {
  /** A microphone block at or above this is speech (captured speech sits at -40..-10 dBFS). */
  speechDb: number;
  /** An agent block at or above this is audible (its silence between replies is digital zero). */
  audibleDb: number;
  /**
   * Quiet after the last loud microphone block before the speech counts as ended; a reply that
   * starts sooner (an agent that takes the turn on a shorter silence) ends it at once.
   */
  hangoverS: number;
  /** Loud time an utterance needs to count (a click or a cough shorter than this is not speech). */
  minSpeechS: number;
  /** Agent quiet before a loud block makes that block a reply's start (pauses between its sentences are shorter). */
  replyGapS: number;
}

export const DEFAULT_HEARD_TUNING: HeardTuning = {
  speechDb: -45,
  audibleDb: -50,
  hangoverS: 0.3,
  minSpeechS: 0.1,
  replyGapS: 0.25,
};

/** One turn as heard: end of the user's speech, first audible reply block (context clock, s), and the gap in ms. */
export interface HeardTurn {
  speechEnd: number;
  heardAt: number;
  ms: number;
}

const rmsAt = (db: number): number => 10 ** (db / 20);

/**
 * Fed every render block in clock order (one call per block, both tracks of the same quantum, as
 * the worklet records them), it returns a turn at the first audible reply block after an
 * utterance ended, once per utterance.
 */
export class HeardDetector {
  private readonly speechRms: number;
  private readonly audibleRms: number;
  private readonly tuning: HeardTuning;
  /** The utterance in progress: when its first loud block started, loud time so far, end of its last loud block. */
  private loudS = 0;
  private lastLoudEnd: number | null = null;
  /** End of the utterance that awaits its reply. */
  private ended: number | null = null;
  /** End of the agent's last audible block; -Infinity before any. */
  private remoteLoudEnd = -Infinity;

  constructor(tuning: HeardTuning = DEFAULT_HEARD_TUNING) {
    this.tuning = tuning;
    this.speechRms = rmsAt(tuning.speechDb);
    this.audibleRms = rmsAt(tuning.audibleDb);
  }

  /** `t`: the block's start on the context clock (s); `blockS`: its length; levels as RMS (0..1). */
  block(t: number, blockS: number, micRms: number, remoteRms: number): HeardTurn | null {
    this.onMic(t, blockS, micRms);
    return this.onRemote(t, blockS, remoteRms);
  }

  /** Forgets everything: a new call, or media that was renegotiated. */
  reset(): void {
    this.loudS = 0;
    this.lastLoudEnd = null;
    this.ended = null;
    this.remoteLoudEnd = -Infinity;
  }

  private onMic(t: number, blockS: number, rms: number): void {
    if (rms >= this.speechRms) {
      this.loudS += blockS;
      this.lastLoudEnd = t + blockS;
      return;
    }
    if (this.lastLoudEnd === null || t - this.lastLoudEnd < this.tuning.hangoverS) return;
    // Speech over: a new utterance replaces one still waiting (the agent waits for the last one too).
    if (this.loudS >= this.tuning.minSpeechS) this.ended = this.lastLoudEnd;
    this.loudS = 0;
    this.lastLoudEnd = null;
  }

  private onRemote(t: number, blockS: number, rms: number): HeardTurn | null {
    if (rms < this.audibleRms) return null;
    const starts = t - this.remoteLoudEnd >= this.tuning.replyGapS;
    this.remoteLoudEnd = t + blockS;
    // A reply heard while the microphone is quiet but still inside its hangover answers the speech
    // before that quiet: left waiting, the utterance would end after the reply began and lose it.
    if (starts && this.lastLoudEnd !== null && t >= this.lastLoudEnd && this.loudS >= this.tuning.minSpeechS) {
      this.ended = this.lastLoudEnd;
      this.loudS = 0;
      this.lastLoudEnd = null;
    }
    const ended = this.ended;
    // A reply still playing through the end of speech (the user spoke over it) is not the answer.
    if (!starts || ended === null || t < ended) return null;
    this.ended = null;
    return { speechEnd: ended, heardAt: t, ms: (t - ended) * 1000 };
  }
}

/**
 * Pairs heard turns with the replies the agent says it started (its `speaking` status), so that
 * each reply is reported at most once and only a turn that reply answers is reported for it: the
 * agent takes one report per reply it started (docs/api.md, "Client metrics"). An utterance that
 * did not become a turn (a backchannel over a reply, the reply's own echo) never meets a reply
 * that started after it ended, so it is never sent.
 */
export class HeardReporter {
  private pending: HeardTurn | null = null;
  /** When the latest reply started (context clock, s), and whether it has been reported. */
  private replyAt: number | null = null;
  private reported = false;
  private readonly emit: (turn: HeardTurn) => void;
  /** How much earlier than the agent's `speaking` status the reply may be heard (the status and the audio race). */
  private readonly earlyS: number;

  constructor(emit: (turn: HeardTurn) => void, earlyS = 0.25) {
    this.emit = emit;
    this.earlyS = earlyS;
  }

  /** The agent started a reply; `t` is the context clock when the page learned it. */
  replyStarted(t: number): void {
    this.replyAt = t;
    this.reported = false;
    this.flush();
  }

  heard(turn: HeardTurn): void {
    this.pending = turn;
    this.flush();
  }

  reset(): void {
    this.pending = null;
    this.replyAt = null;
    this.reported = false;
  }

  private flush(): void {
    const turn = this.pending;
    const replyAt = this.replyAt;
    if (turn === null || replyAt === null || this.reported) return;
    if (turn.heardAt < replyAt - this.earlyS) {
      this.pending = null; // heard before this reply began: something else
      return;
    }
    if (turn.speechEnd > replyAt) return; // spoken after the reply began: waits for a reply of its own
    this.pending = null;
    this.reported = true;
    this.emit(turn);
  }
}

/** Agent quiet this long (render blocks) after its sound is its held silence, not a gap in a word. */
export const HELD_SILENCE_BLOCKS = 15;

/**
 * How much of a held reply the user never heard (docs/api.md, "Hold and resume"). The page's output
 * went silent at `since`; what the agent had already sent still arrives and plays through the
 * muted output. Fed the agent's blocks as they arrive before the mute, it counts the reply's sound
 * from `since` to the start of the agent's held silence: that stretch was silenced, not heard, and
 * the agent plays it again at the resume.
 */
export class UnheardCounter {
  private readonly audibleRms: number;
  private heardUntil: number;
  private run = 0;
  private done = false;

  constructor(
    private readonly since: number,
    tuning: HeardTuning = DEFAULT_HEARD_TUNING,
    private readonly quietBlocks = HELD_SILENCE_BLOCKS,
  ) {
    this.audibleRms = rmsAt(tuning.audibleDb);
    this.heardUntil = since;
  }

  /** The unheard ms once the held silence is heard, else null. */
  block(t: number, blockS: number, rms: number): number | null {
    if (this.done || t + blockS <= this.since) return null;
    if (rms >= this.audibleRms) {
      this.run = 0;
      this.heardUntil = t + blockS;
      return null;
    }
    this.run += 1;
    if (this.run < this.quietBlocks) return null;
    this.done = true;
    return this.counted();
  }

  /** What was counted so far (ms): the answer when the held silence never shows. */
  counted(): number {
    return Math.max(0, this.heardUntil - this.since) * 1000;
  }
}
