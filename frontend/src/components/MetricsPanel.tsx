import { Activity, Gauge } from 'lucide-react';
import type { TurnMetrics } from '../signaling/messages';
import type { NetworkStats } from '../webrtc/stats';
import { formatMs, formatPct } from '../pages/statusInfo';

function Metric({ label, value, testId }: { label: string; value: string; testId?: string }) {
  return (
    <div className="metric">
      <dt>{label}</dt>
      <dd data-testid={testId}>{value}</dd>
    </div>
  );
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? null) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * The heard figure first (voice to voice as this page heard it, interrupted replies included: see
 * src/audio/heard.ts), then the agent's own account of its latest completed turn beside it. The
 * two differ by what only the page sees: network, jitter buffer and playout.
 */
export function LatencyPanel({ turns, heard = [] }: { turns: TurnMetrics[]; heard?: number[] }) {
  const last = turns.at(-1) ?? null;
  const lastHeard = heard.at(-1) ?? null;
  return (
    <section className="panel" aria-labelledby="latency-title">
      <h2 id="latency-title">
        <Gauge size={18} aria-hidden="true" /> Turn latency
      </h2>
      {last === null && lastHeard === null ? (
        <p className="empty">Appears after the agent's first reply.</p>
      ) : (
        <>
          <dl className="metrics metrics-heard" data-testid="latency">
            <Metric label="Heard, voice to voice" value={formatMs(lastHeard)} testId="latency-heard" />
            <Metric
              label={`Median heard, ${heard.length} turn${heard.length === 1 ? '' : 's'}`}
              value={formatMs(median(heard))}
              testId="latency-heard-median"
            />
          </dl>
          <h3 className="metrics-caption">The agent's account of its last completed turn</h3>
          <dl className="metrics" data-testid="latency-agent">
            <Metric label="Speech to text" value={formatMs(last?.stt_ms)} />
            <Metric label="LLM first token" value={formatMs(last?.llm_first_token_ms)} />
            <Metric label="TTS first audio" value={formatMs(last?.tts_first_audio_ms)} />
            <Metric label="Agent voice to voice" value={formatMs(last?.voice_to_voice_ms)} testId="latency-v2v" />
          </dl>
        </>
      )}
    </section>
  );
}

export function NetworkPanel({ stats }: { stats: NetworkStats | null }) {
  return (
    <section className="panel" aria-labelledby="network-title">
      <h2 id="network-title">
        <Activity size={18} aria-hidden="true" /> Network
      </h2>
      {stats === null ? (
        <p className="empty">Shown while audio is connected.</p>
      ) : (
        <dl className="metrics" data-testid="network">
          <Metric label="Round trip" value={formatMs(stats.rttMs)} testId="net-rtt" />
          <Metric label="Jitter" value={formatMs(stats.jitterMs)} testId="net-jitter" />
          <Metric label="Packet loss" value={formatPct(stats.packetLossPct)} testId="net-loss" />
          <Metric label="Received" value={`${Math.round(stats.bytesReceived / 1024)} KiB`} />
        </dl>
      )}
    </section>
  );
}
