/**
 * AudioWorklet that measures the microphone: posts the RMS level of the last ~50 ms to the page,
 * so the meter costs nothing on the main thread.
 */
class LevelMeterProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.sum = 0;
    this.count = 0;
    this.every = Math.round(sampleRate / 20);
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i += 1) this.sum += channel[i] * channel[i];
      this.count += channel.length;
    }
    if (this.count >= this.every) {
      this.port.postMessage(Math.sqrt(this.sum / this.count));
      this.sum = 0;
      this.count = 0;
    }
    return true;
  }
}

registerProcessor('level-meter', LevelMeterProcessor);
