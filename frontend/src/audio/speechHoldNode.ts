/**
 * The page's side of a moved call's held speech (src/audio/speechHold.ts; docs/deploy.md, "Rolling
 * a pool"): the microphone feeds a worklet on an AudioContext of its own all call long (so the
 * moment before a move's notice is there to send), and its output is a track the page sends in the
 * microphone's place only while a move is being held and replayed. The microphone's own track stays
 * what a call sends otherwise: this adds no delay to a call that does not move.
 */
import type { SpeechHoldCommand, SpeechHoldReport } from './speech-hold.worklet';
// Bundled with its import and emitted under /assets (the agent serves only index.html and /assets).
import WORKLET_URL from './speech-hold.worklet.ts?worker&url';

/** What the session controller uses; a stand-in in unit tests. */
export interface SpeechHoldLike {
  /** Taps this microphone (null: none); the same stream again changes nothing. */
  listen(mic: MediaStream | null): void;
  /** The move's notice: keeps what the user says from a moment before. False when it cannot (not tapping). */
  hold(): boolean;
  /** While held: the track to send instead of the microphone (silent until `release`). */
  track(): MediaStreamTrack | null;
  /** The new media is up: sends what was held, then `onCaughtUp` once the delay is gone. */
  release(onCaughtUp: () => void): void;
  /** Back to the live microphone at once; what was held is discarded. */
  cancel(): void;
  close(): void;
}

export class SpeechHoldNode implements SpeechHoldLike {
  private context: AudioContext | null = null;
  private loaded: Promise<void> | null = null;
  private mic: MediaStream | null = null;
  private generation = 0;
  private plugged: { node: AudioWorkletNode; source: MediaStreamAudioSourceNode; out: MediaStreamTrack } | null =
    null;
  private held = false;
  private onCaughtUp: (() => void) | null = null;

  listen(mic: MediaStream | null): void {
    if (mic === this.mic) return;
    this.mic = mic;
    this.unplug();
    if (!mic || typeof AudioContext === 'undefined') return;
    const generation = this.generation;
    void this.plug(generation, mic).catch((error: unknown) => {
      console.warn('voicepool: speech is not held across a move', error);
    });
  }

  hold(): boolean {
    if (!this.plugged) return false;
    this.post('hold');
    this.held = true;
    return true;
  }

  track(): MediaStreamTrack | null {
    return this.held ? (this.plugged?.out ?? null) : null;
  }

  release(onCaughtUp: () => void): void {
    if (!this.held || !this.plugged) {
      this.cancel();
      onCaughtUp();
      return;
    }
    this.onCaughtUp = onCaughtUp;
    this.post('release');
  }

  cancel(): void {
    this.held = false;
    this.onCaughtUp = null;
    this.post('cancel');
  }

  close(): void {
    this.unplug();
    this.mic = null;
    const context = this.context;
    this.context = null;
    this.loaded = null;
    void context?.close().catch(() => undefined);
  }

  private async plug(generation: number, mic: MediaStream): Promise<void> {
    if (!this.context) {
      const context = new AudioContext({ latencyHint: 'interactive' });
      if (!context.audioWorklet) {
        void context.close();
        return;
      }
      this.context = context;
      this.loaded = context.audioWorklet.addModule(WORKLET_URL);
    }
    const context = this.context;
    await this.loaded;
    await context.resume();
    if (generation !== this.generation || context !== this.context) return;
    const node = new AudioWorkletNode(context, 'speech-hold', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: 'explicit',
    });
    node.port.onmessage = (event: MessageEvent<SpeechHoldReport>) => {
      if (event.data.type !== 'caught-up') return;
      const done = this.onCaughtUp;
      this.held = false;
      this.onCaughtUp = null;
      done?.();
    };
    const source = context.createMediaStreamSource(mic);
    const destination = context.createMediaStreamDestination();
    destination.channelCount = 1;
    source.connect(node);
    node.connect(destination);
    const [out] = destination.stream.getAudioTracks();
    if (!out) return;
    this.plugged = { node, source, out };
  }

  private unplug(): void {
    this.generation += 1;
    const plugged = this.plugged;
    this.plugged = null;
    this.held = false;
    this.onCaughtUp = null;
    if (!plugged) return;
    plugged.source.disconnect();
    plugged.node.disconnect();
    plugged.node.port.onmessage = null;
    plugged.out.stop();
  }

  private post(command: SpeechHoldCommand): void {
    this.plugged?.node.port.postMessage(command);
  }
}
