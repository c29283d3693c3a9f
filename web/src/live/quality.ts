// Connection quality from getStats: per remote participant (what this page receives of them),
// this page's own figures (sent to the server as a quality message, which counts towards its
// level) and its connection type. The server's level (Participant.quality) comes first where
// it has one; these stand in until it has measured.
import type { Quality } from './protocol';

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
  bytesSent?: number;
  jitter?: number;
  framesPerSecond?: number;
  currentRoundTripTime?: number;
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
  frameWidth?: number;
  frameHeight?: number;
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

/** This page's own counters, summed over both connections. */
export interface OwnCounters {
  at: number;
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  lostIn: number;
  jitter: number;
  rttMs: number;
  fps: number;
  /** The largest video this page sends (its top simulcast layer), 0 when none. */
  width: number;
  height: number;
}

export function ownCounters(sub: RTCStatsReport | Map<string, StatLike> | null, pub: RTCStatsReport | Map<string, StatLike> | null, at: number): OwnCounters {
  const c: OwnCounters = { at, bytesIn: 0, bytesOut: 0, packetsIn: 0, lostIn: 0, jitter: 0, rttMs: 0, fps: 0, width: 0, height: 0 };
  let jitters = 0;
  const rtt = (s: StatLike) => {
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime) c.rttMs = Math.max(c.rttMs, s.currentRoundTripTime * 1000);
  };
  sub?.forEach((s: StatLike) => {
    rtt(s);
    if (s.type !== 'inbound-rtp') return;
    c.bytesIn += s.bytesReceived ?? 0;
    c.packetsIn += s.packetsReceived ?? 0;
    c.lostIn += Math.max(0, s.packetsLost ?? 0);
    if (s.jitter !== undefined) {
      c.jitter += s.jitter * 1000;
      jitters++;
    }
    if (s.kind === 'video') c.fps = Math.max(c.fps, s.framesPerSecond ?? 0);
  });
  pub?.forEach((s: StatLike) => {
    rtt(s);
    if (s.type !== 'outbound-rtp') return;
    c.bytesOut += s.bytesSent ?? 0;
    if (s.kind === 'video' && (s.frameWidth ?? 0) * (s.frameHeight ?? 0) > c.width * c.height) {
      c.width = s.frameWidth ?? 0;
      c.height = s.frameHeight ?? 0;
    }
  });
  if (jitters) c.jitter /= jitters;
  return c;
}

/** ownQuality is the protocol's quality message from two samples of this page's counters. */
export function ownQuality(prev: OwnCounters, cur: OwnCounters): Quality {
  const dt = Math.max(0.001, (cur.at - prev.at) / 1000);
  const packets = Math.max(0, cur.packetsIn - prev.packetsIn);
  const lost = Math.max(0, cur.lostIn - prev.lostIn);
  return {
    bitrateIn: Math.max(0, Math.round(((cur.bytesIn - prev.bytesIn) * 8) / dt)),
    bitrateOut: Math.max(0, Math.round(((cur.bytesOut - prev.bytesOut) * 8) / dt)),
    loss: packets + lost > 0 ? Math.min(1, lost / (packets + lost)) : 0,
    rttMs: Math.round(cur.rttMs),
    jitterMs: Math.round(cur.jitter * 10) / 10,
    fps: Math.round(cur.fps * 10) / 10,
    ...(cur.width > 0 ? { width: cur.width, height: cur.height } : {}),
  };
}
