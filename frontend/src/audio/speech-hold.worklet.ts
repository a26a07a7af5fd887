/**
 * AudioWorklet around SpeechHold (src/audio/speechHold.ts): its input is the microphone, its output
 * what the page sends while a moved call's speech is replayed. Each render block goes into the hold
 * and the block it gives back comes out; the page says hold / release / cancel, and hears
 * `caught-up` once the replay has caught up with the microphone. Bundled with its import (the page
 * loads it by URL: `?worker&url`).
 */
import { SpeechHold } from './speechHold';

declare const sampleRate: number;
declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessorLike): void;
interface AudioWorkletProcessorLike {
  readonly port: MessagePort;
  process(inputs: Float32Array[][], outputs: Float32Array[][]): boolean;
}
declare const AudioWorkletProcessor: new () => { readonly port: MessagePort };

export type SpeechHoldCommand = 'hold' | 'release' | 'cancel';
export interface SpeechHoldReport {
  type: 'caught-up';
  /** Samples the bound dropped, and the silence skipped, in this replay. */
  dropped: number;
  skipped: number;
}

class SpeechHoldProcessor extends AudioWorkletProcessor implements AudioWorkletProcessorLike {
  private readonly hold = new SpeechHold(sampleRate);

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<SpeechHoldCommand>) => {
      if (event.data === 'hold') this.hold.hold();
      else if (event.data === 'release') this.hold.release();
      else this.hold.cancel();
    };
  }

  process(inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const input = inputs[0]?.[0];
    const output = outputs[0]?.[0];
    // No microphone block (the track ended or is muted): the hold still plays out what it has.
    if (input) this.hold.push(input);
    if (output && this.hold.pull(output)) {
      const report: SpeechHoldReport = { type: 'caught-up', dropped: this.hold.dropped, skipped: this.hold.skipped };
      this.port.postMessage(report);
    }
    return true;
  }
}

registerProcessor('speech-hold', SpeechHoldProcessor);
