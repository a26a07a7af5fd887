/**
 * The browser half of the heard figure (src/audio/heard.ts): one AudioContext, one worklet node
 * with the microphone track on its first input and the agent's track on its second, so both are
 * read off the clock the page plays audio on.
 *
 * The context and the worklet module can be made while the page is idle (prepare): a context made
 * before any click starts suspended and costs nothing until resumed at the click.
 */
import { DEFAULT_HEARD_TUNING, HeardDetector, type HeardTurn } from './heard';
// Emitted under /assets like the rest of the build (the agent serves only index.html and /assets).
import WORKLET_URL from './heard-tap.worklet.js?url';

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
      numberOfInputs: 2,
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
        source.connect(node, 0, input);
        this.sources.push(source);
      };
      // A remote track tapped while still muted (no packet yet) gave only silence in Chromium's
      // Web Audio here, so it is tapped once its first packets arrive.
      if (track.muted) track.addEventListener('unmute', connect, { once: true });
      else connect();
    });
  }

  private read(batch: number[]): void {
    for (let i = 0; i + 3 < batch.length; i += 4) {
      const turn = this.detector.block(batch[i] ?? 0, batch[i + 1] ?? 0, batch[i + 2] ?? 0, batch[i + 3] ?? 0);
      if (turn) this.onTurn?.(turn);
    }
  }

  private unplug(): void {
    this.generation += 1;
    this.sources.forEach((source) => source.disconnect());
    this.sources = [];
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
      this.node = null;
    }
  }
}
