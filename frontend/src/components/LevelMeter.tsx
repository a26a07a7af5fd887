import { Mic, MicOff } from 'lucide-react';

/** Microphone input level; `level` is 0..1 on a dB scale, null when the mic is off. */
export function LevelMeter({ level }: { level: number | null }) {
  const value = Math.round((level ?? 0) * 100);
  return (
    <div className="meter-row">
      {level === null ? <MicOff size={16} aria-hidden="true" /> : <Mic size={16} aria-hidden="true" />}
      <div
        className="meter"
        role="meter"
        aria-label="Microphone level"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={value}
        aria-valuetext={level === null ? 'Microphone off' : `${value} percent`}
        data-testid="mic-level"
      >
        <div className="meter-fill" style={{ transform: `scaleX(${(level ?? 0).toFixed(3)})` }} />
      </div>
    </div>
  );
}
