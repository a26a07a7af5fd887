/**
 * The browser half of the heard figure (src/audio/heard.ts), and the page's speaker for the agent:
 * one AudioContext, where the agent's track plays through a gain to the speakers, and one worklet
 * node with the microphone track on its first input, the agent's audio after that gain on its
 * second (what the user hears) and before it on its third, all read off the clock the page plays
 * audio on. The gain is the hold's mute (docs/api.md, "Hold and resume"): ramped to zero over a
 * few ms the moment the agent holds, so what the browser had already buffered is not played over
 * the user, and without a click. While this path plays, `onOutput(true)` tells the page to mute
 * its <audio> element (which keeps the track flowing, and plays it while Web Audio cannot).
 *
 * The context and the worklet module can be made while the page is idle (prepare): a context made
 * before any click starts suspended and costs nothing until resumed at the click.
 */
import { DEFAULT_HEARD_TUNING, HeardDetector, type HeardTurn, UnheardCounter } from './heard';
// Emitted under /assets like the rest of the build (the agent serves only index.html and /assets).
import WORKLET_URL from './heard-tap.worklet.js?url';

/** Time constant of the mute's ramp (s): silent within about 10 ms, too smooth to click. */
const RAMP_S = 0.003;
/** A hold is answered this long after it at the latest, with what was counted by then. */
const UNHEARD_WAIT_MS = 500;

/** What the session controller uses; a stand-in in unit tests. */
export interface HeardMeterLike {
  /** Makes the context and loads the worklet, without any track. */
  prepare(): void;
  /** Taps these tracks (either may be null); the same pair again changes nothing. */
  listen(mic: MediaStream | null, remote: MediaStream | null): void;
  /** The context clock (s), or null without a running context. */
  now(): number | null;
  onTurn: ((turn: HeardTurn) => void) | null;
  close(): void;
  /** Silences the agent at the page's output at once (a hold, a cut), until `unsilence`. */
  silence(): void;
  unsilence(): void;
  /**
   * After `silence`: how much of the reply the user never heard (ms), once the agent's held silence
   * arrives; null when the page plays no Web Audio output to count it on.
   */
  unheard(): Promise<number | null>;
}

export class HeardMeter implements HeardMeterLike {
  onTurn: ((turn: HeardTurn) => void) | null = null;
  private context: AudioContext | null = null;
  private loaded: Promise<void> | null = null;
  private node: AudioWorkletNode | null = null;
  private sources: MediaStreamAudioSourceNode[] = [];
  private mic: MediaStream | null = null;
  private remote: MediaStream | null = null;
  private generation = 0;
  private readonly detector = new HeardDetector(DEFAULT_HEARD_TUNING);
  private gain: GainNode | null = null;
  private silenced = false;
  /** The count of what the user did not hear since the latest `silence`, and who waits for it. */
  private count: { counter: UnheardCounter; result: number | null; waiters: ((ms: number) => void)[] } | null =
    null;

  constructor(private readonly onOutput: (live: boolean) => void = () => undefined) {}

  prepare(): void {
    if (this.context || typeof AudioContext === 'undefined') return;
    const context = new AudioContext({ latencyHint: 'interactive' });
    if (!context.audioWorklet) {
      void context.close();
      return;
    }
    this.context = context;
    this.loaded = context.audioWorklet.addModule(WORKLET_URL).catch((error: unknown) => {
      console.warn('voicepool: the heard-latency meter is off', error);
      throw error;
    });
  }

  listen(mic: MediaStream | null, remote: MediaStream | null): void {
    if (mic === this.mic && remote === this.remote) return;
    this.mic = mic;
    this.remote = remote;
    this.unplug();
    this.detector.reset();
    if (!mic && !remote) return;
    this.prepare();
    const generation = this.generation;
    void this.plug(generation, mic, remote).catch(() => undefined);
  }

  now(): number | null {
    return this.context && this.context.state === 'running' ? this.context.currentTime : null;
  }

  silence(): void {
    this.silenced = true;
    this.settle();
    const at = this.ramp(0);
    this.count = at === null ? null : { counter: new UnheardCounter(at + RAMP_S), result: null, waiters: [] };
  }

  unsilence(): void {
    this.silenced = false;
    this.settle();
    this.ramp(1);
  }

  unheard(): Promise<number | null> {
    const count = this.count;
    if (!count) return Promise.resolve(null);
    if (count.result !== null) return Promise.resolve(count.result);
    return new Promise((resolve) => {
      count.waiters.push(resolve);
      setTimeout(() => {
        if (this.count === count) this.settle();
      }, UNHEARD_WAIT_MS);
    });
  }

  close(): void {
    this.unplug();
    this.mic = null;
    this.remote = null;
    const context = this.context;
    this.context = null;
    this.loaded = null;
    void context?.close().catch(() => undefined);
  }

  private async plug(generation: number, mic: MediaStream | null, remote: MediaStream | null): Promise<void> {
    const context = this.context;
    if (!context || !this.loaded) return;
    await this.loaded;
    // Resumed here, at the click that started the call (a context made while idle waits for one).
    await context.resume();
    if (generation !== this.generation || context !== this.context) return;
    const node = new AudioWorkletNode(context, 'heard-tap', {
      numberOfInputs: 3,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: 'explicit',
    });
    node.port.onmessage = (event: MessageEvent<number[]>) => this.read(event.data);
    this.node = node;
    [mic, remote].forEach((stream, input) => {
      const track = stream?.getAudioTracks()[0];
      if (!stream || !track) return;
      const connect = (): void => {
        if (generation !== this.generation) return;
        const source = context.createMediaStreamSource(stream);
        this.sources.push(source);
        if (input === 0) {
          source.connect(node, 0, 0);
          return;
        }
        const gain = context.createGain();
        gain.gain.value = this.silenced ? 0 : 1;
        source.connect(gain);
        gain.connect(context.destination);
        gain.connect(node, 0, 1);
        source.connect(node, 0, 2);
        this.gain = gain;
        this.onOutput(true);
      };
      // A remote track tapped while still muted (no packet yet) gave only silence in Chromium's
      // Web Audio here, so it is tapped once its first packets arrive.
      if (track.muted) track.addEventListener('unmute', connect, { once: true });
      else connect();
    });
  }

  private read(batch: number[]): void {
    for (let i = 0; i + 4 < batch.length; i += 5) {
      const [t, blockS, mic, heard, arriving] = [0, 1, 2, 3, 4].map((k) => batch[i + k] ?? 0) as [
        number,
        number,
        number,
        number,
        number,
      ];
      const turn = this.detector.block(t, blockS, mic, heard);
      if (turn) this.onTurn?.(turn);
      const count = this.count;
      const unheard = count && count.result === null ? count.counter.block(t, blockS, arriving) : null;
      if (unheard !== null) this.settle(unheard);
    }
  }

  /** Ramps the output gain towards `value` from now; the context time it started at, or null without an output. */
  private ramp(value: number): number | null {
    const context = this.context;
    const gain = this.gain;
    if (!context || !gain) return null;
    const now = context.currentTime;
    gain.gain.cancelScheduledValues(now);
    gain.gain.setValueAtTime(gain.gain.value, now);
    gain.gain.setTargetAtTime(value, now, RAMP_S);
    return now;
  }

  /** Ends the count of what was not heard (at `ms`, or at what it has counted): its answer goes to whoever waits. */
  private settle(ms?: number): void {
    const count = this.count;
    if (!count || count.result !== null) return;
    count.result = ms ?? count.counter.counted();
    const result = count.result;
    count.waiters.splice(0).forEach((resolve) => resolve(result));
  }

  private unplug(): void {
    this.generation += 1;
    this.sources.forEach((source) => source.disconnect());
    this.sources = [];
    if (this.gain) {
      this.gain.disconnect();
      this.gain = null;
      this.onOutput(false);
    }
    this.settle();
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
      this.node = null;
    }
  }
}
