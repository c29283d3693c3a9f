// Connection quality from getStats: per remote participant (what this page receives of them)
// and this page's own connection type. The server's participant info says only whether a
// participant is connected and its connection type; loss and frame rate are measured here.

export type QualityLevel = 'good' | 'weak' | 'lost';
export type ConnectionType = 'udp' | 'tcp' | 'relay';

/** One participant's media as received here, over the last interval. */
export interface ReceivedQuality {
  level: QualityLevel;
  /** fraction lost, 0..1 */
  loss: number;
  /** video frames decoded per second */
  fps: number;
  /** bit/s received */
  bitrate: number;
}

/** The counters of one sample, by participant. */
export interface Counters {
  at: number;
  byParticipant: Record<string, { packets: number; lost: number; frames: number; bytes: number; video: boolean }>;
}

interface StatLike {
  type: string;
  id?: string;
  kind?: string;
  trackIdentifier?: string;
  packetsReceived?: number;
  packetsLost?: number;
  framesDecoded?: number;
  bytesReceived?: number;
  selectedCandidatePairId?: string;
  localCandidateId?: string;
  candidateType?: string;
  protocol?: string;
  state?: string;
  nominated?: boolean;
}

/** counters sums a sub connection's inbound counters by participant (track ID → participant). */
export function counters(report: RTCStatsReport | Map<string, StatLike>, participantOf: (trackId: string) => string | undefined, at: number): Counters {
  const out: Counters = { at, byParticipant: {} };
  report.forEach((s: StatLike) => {
    if (s.type !== 'inbound-rtp' || !s.trackIdentifier) return;
    const p = participantOf(s.trackIdentifier);
    if (!p) return;
    const c = (out.byParticipant[p] ??= { packets: 0, lost: 0, frames: 0, bytes: 0, video: false });
    c.packets += s.packetsReceived ?? 0;
    c.lost += Math.max(0, s.packetsLost ?? 0);
    c.bytes += s.bytesReceived ?? 0;
    if (s.kind === 'video') {
      c.video = true;
      c.frames += s.framesDecoded ?? 0;
    }
  });
  return out;
}

/**
 * received turns two samples into quality: lost when nothing arrived in the interval, weak
 * above 5% loss or below 5 frames a second of video (the SFU's lowest layer still gives
 * 7-15), good otherwise.
 */
export function received(prev: Counters | null, cur: Counters): Record<string, ReceivedQuality> {
  const out: Record<string, ReceivedQuality> = {};
  const dt = prev ? Math.max(0.001, (cur.at - prev.at) / 1000) : 0;
  for (const [p, c] of Object.entries(cur.byParticipant)) {
    const b = prev?.byParticipant[p];
    if (!b || !dt) continue;
    const packets = c.packets - b.packets;
    const lost = Math.max(0, c.lost - b.lost);
    const fps = (c.frames - b.frames) / dt;
    const loss = packets + lost > 0 ? lost / (packets + lost) : 0;
    const bitrate = ((c.bytes - b.bytes) * 8) / dt;
    let level: QualityLevel = 'good';
    if (packets <= 0) level = 'lost';
    else if (loss > 0.05 || (c.video && fps < 5)) level = 'weak';
    out[p] = { level, loss, fps: Math.round(fps * 10) / 10, bitrate: Math.round(bitrate) };
  }
  return out;
}

/** connectionType says how a peer connection's selected pair goes: udp, tcp, or relay (TURN). */
export function connectionType(report: RTCStatsReport | Map<string, StatLike>): ConnectionType | null {
  const byId = new Map<string, StatLike>();
  let pairId = '';
  report.forEach((s: StatLike) => {
    if (s.id) byId.set(s.id, s);
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  let pair = pairId ? byId.get(pairId) : undefined;
  if (!pair) {
    for (const s of byId.values()) if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) pair = s;
  }
  const local = pair?.localCandidateId ? byId.get(pair.localCandidateId) : undefined;
  if (!local) return null;
  if (local.candidateType === 'relay') return 'relay';
  return local.protocol === 'tcp' ? 'tcp' : 'udp';
}
