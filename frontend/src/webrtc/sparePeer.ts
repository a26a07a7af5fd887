/**
 * A peer connection made while the page is idle, so the click does not wait for it: an audio
 * transceiver, the offer set as local description, and ICE gathering done before anyone asks. It
 * holds no session and contacts nobody; the microphone track goes in at the click
 * (replaceTrack, no new offer). Only a call whose session names the same ICE servers takes it (the
 * servers come with the session, and candidates gathered without them would miss their relays).
 */
import type { PeerLike } from '../hooks/sessionController';

export interface SparePeer {
  pc: PeerLike;
  sender: RTCRtpSender;
  iceServers: RTCIceServer[];
  /** Settles true once the offer is the local description, false if the browser refused. */
  offered: Promise<boolean>;
  /** Gathering ended while idle (its last, null candidate was seen), so nothing more will trickle. */
  gathered: boolean;
}

/**
 * Null where the browser has no transceivers (no WebRTC here, or a page under test with stand-in
 * peers, which must not see a peer it did not ask for) or the peer cannot take one.
 */
export function prepareSparePeer(
  create: (config: RTCConfiguration) => PeerLike,
  iceServers: RTCIceServer[] = [],
): SparePeer | null {
  if (typeof RTCRtpTransceiver === 'undefined') return null;
  let pc: PeerLike;
  try {
    pc = create({ iceServers });
  } catch {
    return null; // no WebRTC here
  }
  if (!pc.addTransceiver) {
    pc.close();
    return null;
  }
  const transceiver = pc.addTransceiver('audio', { direction: 'sendrecv' });
  const spare: SparePeer = { pc, sender: transceiver.sender, iceServers, offered: Promise.resolve(false), gathered: false };
  pc.onicecandidate = (event) => {
    if (event.candidate === null) spare.gathered = true;
  };
  spare.offered = (async () => {
    await pc.setLocalDescription(await pc.createOffer());
    return true;
  })().catch(() => false);
  return spare;
}

/** Whether a session's ICE servers are the ones the spare gathered with. */
export function spareFits(spare: SparePeer, iceServers: RTCIceServer[]): boolean {
  return JSON.stringify(spare.iceServers) === JSON.stringify(iceServers) && spare.pc.signalingState === 'have-local-offer';
}
