import { describe, expect, it } from 'vitest';
import { summarizeStats } from '../src/webrtc/stats';

/** Shaped like Chromium's getStats() while the agent talks (values trimmed to what we read). */
const report = (packetsReceived: number, packetsLost: number, energy: number) =>
  new Map<string, Record<string, unknown>>([
    ['T01', { id: 'T01', type: 'transport', selectedCandidatePairId: 'CP1' }],
    ['CP1', { id: 'CP1', type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: 0.012 }],
    ['CP2', { id: 'CP2', type: 'candidate-pair', state: 'failed', currentRoundTripTime: 0.5 }],
    ['IA', { id: 'IA', type: 'inbound-rtp', kind: 'audio', jitter: 0.004, packetsReceived, packetsLost, totalAudioEnergy: energy, audioLevel: 0.2, bytesReceived: 4096 }],
    ['OA', { id: 'OA', type: 'outbound-rtp', kind: 'audio', bytesSent: 2048 }],
    ['RI', { id: 'RI', type: 'remote-inbound-rtp', roundTripTime: 0.03 }],
  ]);

describe('summarizeStats', () => {
  it('reads RTT of the selected pair, inbound jitter, energy and bytes', () => {
    const s = summarizeStats(report(100, 0, 0.25));
    expect(s).toMatchObject({ rttMs: 12, jitterMs: 4, packetLossPct: 0, inboundAudioEnergy: 0.25, inboundAudioLevel: 0.2, bytesReceived: 4096, bytesSent: 2048 });
  });

  it('computes loss over the window since the previous sample', () => {
    const first = summarizeStats(report(100, 0, 0));
    const second = summarizeStats(report(190, 10, 0), first);
    expect(second.packetLossPct).toBeCloseTo(10, 5);
  });

  it('falls back to the RTCP RTT and copes with an empty report', () => {
    const noPair = new Map([['RI', { id: 'RI', type: 'remote-inbound-rtp', roundTripTime: 0.03 }]]);
    expect(summarizeStats(noPair).rttMs).toBeCloseTo(30, 5);
    expect(summarizeStats([])).toMatchObject({ rttMs: null, jitterMs: null, packetLossPct: null, inboundAudioEnergy: 0 });
  });
});
