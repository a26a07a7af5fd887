import { useEffect, useState } from 'react';
import { rmsToMeter, smoothLevel } from '../audio/level';
// Emitted under /assets like the rest of the build (the agent serves only index.html and /assets).
import WORKLET_URL from '../audio/level-meter.worklet.js?url';

/**
 * Microphone level (0..1) measured by an AudioWorklet on the captured stream; null when there is
 * no stream or the browser lacks AudioWorklet.
 */
export function useMicLevel(stream: MediaStream | null): number | null {
  const [reading, setReading] = useState<{ stream: MediaStream | null; level: number | null }>({
    stream: null,
    level: null,
  });
  useEffect(() => {
    if (!stream || typeof AudioContext === 'undefined') return undefined;
    const setLevel = (level: number | null): void => setReading({ stream, level });
    const context = new AudioContext();
    let node: AudioWorkletNode | null = null;
    let source: MediaStreamAudioSourceNode | null = null;
    let closed = false;
    let current = 0;
    const setup = async (): Promise<void> => {
      if (!context.audioWorklet) return;
      await context.audioWorklet.addModule(WORKLET_URL);
      if (closed) return;
      source = context.createMediaStreamSource(stream);
      node = new AudioWorkletNode(context, 'level-meter', { numberOfOutputs: 0 });
      node.port.onmessage = (event: MessageEvent<number>) => {
        current = smoothLevel(current, rmsToMeter(event.data));
        setLevel(current);
      };
      source.connect(node);
      await context.resume();
    };
    setup().catch(() => setLevel(null));
    return () => {
      closed = true;
      source?.disconnect();
      if (node) node.port.onmessage = null;
      node?.disconnect();
      void context.close().catch(() => undefined);
    };
  }, [stream]);
  // A reading from a previous stream means nothing for the current one.
  return reading.stream === stream ? reading.level : null;
}
