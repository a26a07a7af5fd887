/** The user's voice for the fake microphone: flite (voice slt, which pocketsphinx recognises well). */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export const SPOKEN_TEXT = 'hello, what time is it';

/**
 * Writes a 48 kHz mono WAV: `leadingS` of silence (the peer connects while it plays), the sentence, then `trailingS` of silence.
 * Chromium loops the file, so the trailing silence is the gap between the user's turns, long
 * enough for the agent to answer before the next one.
 */
export function speechWav(dir: string, text = SPOKEN_TEXT, leadingS = 1, trailingS = 4.5): string {
  const raw = resolve(dir, 'speech-raw.wav');
  const out = resolve(dir, 'speech.wav');
  execFileSync('flite', ['-voice', 'slt', '-t', text, '-o', raw], { timeout: 30_000 });
  execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', out, 'pad', String(leadingS), String(trailingS)], {
    timeout: 30_000,
  });
  return out;
}
