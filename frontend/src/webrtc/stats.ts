/**
 * Network figures for the dashboard, reduced from an RTCStatsReport. Pure, so it is tested on
 * recorded reports and reused by the browser e2e to prove the agent's audio really arrives.
 */
export interface NetworkStats {
  /** Round-trip time of the selected ICE candidate pair (or RTCP), milliseconds. */
  rttMs: number | null;
  /** Jitter of the agent's audio as we receive it, milliseconds. */
  jitterMs: number | null;
  /** Lost / (lost + received) for inbound audio since the previous sample, percent. */
  packetLossPct: number | null;
  packetsReceived: number;
  packetsLost: number;
  /** Total energy of inbound audio (grows while the agent speaks). */
  inboundAudioEnergy: number;
  inboundAudioLevel: number | null;
  bytesReceived: number;
  bytesSent: number;
}

type StatsEntry = Record<string, unknown> & { type: string; id: string };

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function entries(report: Iterable<unknown> | { forEach: (cb: (v: unknown) => void) => void }): StatsEntry[] {
  const out: StatsEntry[] = [];
  const push = (value: unknown): void => {
    if (typeof value === 'object' && value !== null && 'type' in value && 'id' in value) out.push(value as StatsEntry);
  };
  if ('forEach' in report && typeof report.forEach === 'function') report.forEach(push);
  else for (const value of report as Iterable<unknown>) push(value);
  return out;
}

function selectedPair(all: StatsEntry[]): StatsEntry | undefined {
  const transport = all.find((s) => s.type === 'transport' && typeof s.selectedCandidatePairId === 'string');
  if (transport) {
    const pair = all.find((s) => s.id === transport.selectedCandidatePairId);
    if (pair) return pair;
  }
  return all.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated === true);
}

export function summarizeStats(report: Parameters<typeof entries>[0], previous?: NetworkStats | null): NetworkStats {
  const all = entries(report);
  const inbound = all.filter((s) => s.type === 'inbound-rtp' && (s.kind ?? s.mediaType) === 'audio');
  const outbound = all.filter((s) => s.type === 'outbound-rtp' && (s.kind ?? s.mediaType) === 'audio');
  const remoteInbound = all.find((s) => s.type === 'remote-inbound-rtp');
  const sum = (list: StatsEntry[], key: string): number => list.reduce((acc, s) => acc + (num(s[key]) ?? 0), 0);

  const pairRtt = num(selectedPair(all)?.currentRoundTripTime);
  const rtcpRtt = num(remoteInbound?.roundTripTime);
  const rtt = pairRtt ?? rtcpRtt;
  const jitter = inbound.length > 0 ? Math.max(...inbound.map((s) => num(s.jitter) ?? 0)) : null;

  const packetsReceived = sum(inbound, 'packetsReceived');
  const packetsLost = Math.max(0, sum(inbound, 'packetsLost'));
  const dReceived = packetsReceived - (previous?.packetsReceived ?? 0);
  const dLost = packetsLost - (previous?.packetsLost ?? 0);
  const window = dReceived + dLost;
  const packetLossPct = window > 0 ? (100 * Math.max(0, dLost)) / window : inbound.length > 0 ? 0 : null;

  const levels = inbound.map((s) => num(s.audioLevel)).filter((v): v is number => v !== null);
  return {
    rttMs: rtt === null ? null : rtt * 1000,
    jitterMs: jitter === null ? null : jitter * 1000,
    packetLossPct,
    packetsReceived,
    packetsLost,
    inboundAudioEnergy: sum(inbound, 'totalAudioEnergy'),
    inboundAudioLevel: levels.length > 0 ? Math.max(...levels) : null,
    bytesReceived: sum(inbound, 'bytesReceived'),
    bytesSent: sum(outbound, 'bytesSent'),
  };
}
