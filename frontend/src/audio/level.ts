/**
 * Maps an RMS amplitude to a 0..1 meter position on a dB scale (-60 dBFS .. 0 dBFS), which matches
 * how loud speech feels far better than a linear scale.
 */
export function rmsToMeter(rms: number): number {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

/** Fast attack, slow release, so the meter does not flicker between syllables. */
export function smoothLevel(previous: number, next: number): number {
  return next > previous ? next : previous * 0.85 + next * 0.15;
}
