/**
 * AudioWorklet that times what the user hears: input 0 is the microphone track, input 1 the
 * agent's audio as the page plays it (after the hold's mute), input 2 the agent's track as it
 * arrives (before it). Each 128-sample render block's start on the context clock and the three RMS
 * levels go to the page in batches; the page decides (src/audio/heard.ts). One node for all keeps
 * their blocks in step, so the page reads them in clock order.
 */
function rms(input) {
  const channel = input && input[0];
  if (!channel) return 0;
  let sum = 0;
  for (let i = 0; i < channel.length; i += 1) sum += channel[i] * channel[i];
  return Math.sqrt(sum / channel.length);
}

class HeardTapProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.batch = [];
  }

  process(inputs) {
    this.batch.push(currentTime, 128 / sampleRate, rms(inputs[0]), rms(inputs[1]), rms(inputs[2]));
    // Eight blocks (about 21 ms at 48 kHz) per message: a figure is read once per reply, never per block.
    if (this.batch.length >= 8 * 5) {
      this.port.postMessage(this.batch);
      this.batch = [];
    }
    return true;
  }
}

registerProcessor('heard-tap', HeardTapProcessor);
