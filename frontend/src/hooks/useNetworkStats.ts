import { useEffect, useState } from 'react';
import { summarizeStats, type NetworkStats } from '../webrtc/stats';
import type { PeerLike } from './sessionController';

interface Sample {
  peer: PeerLike | null;
  stats: NetworkStats | null;
}

/** Samples getStats on the live peer once per `intervalMs`; null while there is no peer. */
export function useNetworkStats(peer: PeerLike | null, intervalMs = 1000): NetworkStats | null {
  const [sample, setSample] = useState<Sample>({ peer: null, stats: null });
  useEffect(() => {
    if (!peer) return undefined;
    let previous: NetworkStats | null = null;
    let cancelled = false;
    const take = async (): Promise<void> => {
      try {
        const report = await peer.getStats();
        if (cancelled) return;
        previous = summarizeStats(report, previous);
        setSample({ peer, stats: previous });
      } catch {
        // The peer closed between ticks; the next peer brings a new effect.
      }
    };
    const timer = setInterval(() => void take(), intervalMs);
    void take();
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [peer, intervalMs]);
  // A sample from a previous peer is stale the moment the peer changes.
  return sample.peer === peer ? sample.stats : null;
}
