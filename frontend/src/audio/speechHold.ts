/**
 * The user's speech across a call's move (docs/deploy.md, "Rolling a pool"): from the move's notice
 * the old agent no longer listens, and a live microphone cannot be paused, so what the user says is
 * kept here until the new peer connection is up, with the moment before the notice (the old agent
 * had stopped its pipeline a little before it said so). Then it is sent from the start, followed by
 * the microphone with the delay that left; silence is skipped while behind, so the delay shrinks
 * without cutting words, and once nothing is left behind the page sends the live microphone again.
 *
 * Pure, sample-rate driven, no Web Audio: the worklet (speech-hold.worklet.ts) only feeds it the
 * microphone's blocks and plays what `pull` gives.
 */

export interface SpeechHoldTuning {
  /** Audio kept from before the notice (ms). */
  preRollMs: number;
  /** At most this much is kept (ms): past it the oldest goes, so a hold never grows without bound. */
  maxHeldMs: number;
  /** A frame quieter than this (RMS, full scale 1) is silence, skipped while behind. */
  silenceRms: number;
  /** The unit silence is judged and skipped in (ms). */
  frameMs: number;
  /**
   * Only a pause this long (ms) is shortened, and to this: the quiet inside and between words (a
   * stop consonant's closure, a soft onset) stays, so the words stay whole.
   */
  pauseMs: number;
  /** At most this many frames are skipped per block sent: the work of one render block stays small. */
  skipPerBlock: number;
  /** A replay that has not caught up after this long (ms) gives up: the live microphone goes again. */
  maxReplayMs: number;
}

export const DEFAULT_SPEECH_HOLD_TUNING: SpeechHoldTuning = {
  preRollMs: 200,
  maxHeldMs: 5000,
  // About -46 dBFS: below a voice at a normal distance, above a quiet room's floor.
  silenceRms: 0.005,
  frameMs: 10,
  pauseMs: 150,
  skipPerBlock: 8,
  maxReplayMs: 15_000,
};

export type SpeechHoldState = 'live' | 'holding' | 'replaying';

/** A bounded FIFO of samples: the oldest go when it is full. */
class SampleQueue {
  private readonly buffer: Float32Array;
  private start = 0;
  length = 0;

  constructor(capacity: number) {
    this.buffer = new Float32Array(Math.max(1, capacity));
  }

  push(samples: Float32Array): void {
    const capacity = this.buffer.length;
    const from = Math.max(0, samples.length - capacity);
    for (let i = from; i < samples.length; i += 1) {
      this.buffer[(this.start + this.length) % capacity] = samples[i] ?? 0;
      if (this.length < capacity) this.length += 1;
      else this.start = (this.start + 1) % capacity;
    }
  }

  /** Drops the oldest `count` samples. */
  drop(count: number): void {
    const n = Math.min(count, this.length);
    this.start = (this.start + n) % this.buffer.length;
    this.length -= n;
  }

  /** Keeps only the newest `count` samples. */
  keepNewest(count: number): void {
    if (this.length > count) this.drop(this.length - count);
  }

  /** Moves the oldest samples into `out` (from `offset`); how many it moved. */
  shift(out: Float32Array, offset: number): number {
    const n = Math.min(out.length - offset, this.length);
    for (let i = 0; i < n; i += 1) out[offset + i] = this.buffer[(this.start + i) % this.buffer.length] ?? 0;
    this.drop(n);
    return n;
  }

  /** RMS of `count` samples from `offset` past the oldest. */
  rms(offset: number, count: number): number {
    const n = Math.min(count, this.length - offset);
    if (n <= 0) return 0;
    let sum = 0;
    for (let i = offset; i < offset + n; i += 1) {
      const v = this.buffer[(this.start + i) % this.buffer.length] ?? 0;
      sum += v * v;
    }
    return Math.sqrt(sum / n);
  }

}

export class SpeechHold {
  private readonly queue: SampleQueue;
  private readonly preRoll: number;
  private readonly frame: number;
  private readonly pause: number;
  private readonly maxReplay: number;
  private replayed = 0;
  private _state: SpeechHoldState = 'live';
  /** Samples the hold lost to its bound, and the silence skipped to catch up (for the page's figures). */
  dropped = 0;
  skipped = 0;

  constructor(
    sampleRate: number,
    private readonly tuning: SpeechHoldTuning = DEFAULT_SPEECH_HOLD_TUNING,
  ) {
    const samples = (ms: number): number => Math.max(1, Math.round((ms * sampleRate) / 1000));
    this.preRoll = samples(tuning.preRollMs);
    this.frame = samples(tuning.frameMs);
    this.pause = samples(tuning.pauseMs);
    this.maxReplay = samples(tuning.maxReplayMs);
    this.queue = new SampleQueue(samples(tuning.maxHeldMs));
  }

  get state(): SpeechHoldState {
    return this._state;
  }

  /** Samples waiting to be sent: the delay behind the microphone. */
  get behind(): number {
    return this.queue.length;
  }

  /** Every microphone block, in order: live, only the last pre-roll is kept; else all of it, bounded. */
  push(block: Float32Array): void {
    const before = this.queue.length + block.length;
    this.queue.push(block);
    if (this._state === 'live') this.queue.keepNewest(this.preRoll);
    else this.dropped += before - this.queue.length;
  }

  /** The move's notice: from now everything is kept, starting with the pre-roll already here. */
  hold(): void {
    if (this._state !== 'live') return;
    this._state = 'holding';
    this.dropped = 0;
    this.skipped = 0;
  }

  /** The new peer connection is up: `pull` now gives the held audio, then the delayed microphone. */
  release(): void {
    if (this._state !== 'holding') return;
    this._state = 'replaying';
    this.replayed = 0;
  }

  /** Every frame of the first `span` samples held is below the silence level. */
  private quiet(span: number): boolean {
    for (let at = 0; at < span; at += this.frame) {
      if (this.queue.rms(at, Math.min(this.frame, span - at)) >= this.tuning.silenceRms) return false;
    }
    return true;
  }

  /** Back to live at once, what was held discarded (a failure: never leave the user unheard). */
  cancel(): void {
    this._state = 'live';
    this.queue.keepNewest(this.preRoll);
  }

  /**
   * Fills `out` with what to send next (silence while holding or live). True once the replay has
   * caught up (or given up): the caller sends the live microphone again, and the hold is live.
   */
  pull(out: Float32Array): boolean {
    out.fill(0);
    if (this._state !== 'replaying') return false;
    // Behind by more than this block: a frame at the head can go when a pause starts there (all
    // quiet for pauseMs, or up to what is held), the last one short (the delay left is rarely a
    // whole number of frames, and must reach zero).
    for (let n = 0; n < this.tuning.skipPerBlock && this.queue.length > out.length; n += 1) {
      const ahead = this.queue.length - out.length;
      if (!this.quiet(Math.min(this.pause, ahead))) break;
      const head = Math.min(this.frame, ahead);
      this.queue.drop(head);
      this.skipped += head;
    }
    this.replayed += this.queue.shift(out, 0);
    if (this.queue.length === 0 || this.replayed >= this.maxReplay) {
      this.cancel();
      return true;
    }
    return false;
  }
}
