import { describe, expect, it } from 'vitest';
import { connectionType, counters, ownCounters, ownQuality, received } from './quality';

type Stat = Record<string, unknown> & { type: string };
const report = (stats: Stat[]) => new Map(stats.map((s, i) => [String(s.id ?? i), s]));
const owner: Record<string, string> = { a1: 'p2', v1: 'p2', v2: 'p3' };

describe('quality', () => {
  it('grades what arrives of each participant: good, weak (loss, frame rate), lost (nothing)', () => {
    const at = (t: number, p2v: number, p2lost: number, p3v: number, frames: number) =>
      counters(
        report([
          { type: 'inbound-rtp', kind: 'audio', trackIdentifier: 'a1', packetsReceived: 100 + t, packetsLost: 0, bytesReceived: 1000 * t },
          { type: 'inbound-rtp', kind: 'video', trackIdentifier: 'v1', packetsReceived: p2v, packetsLost: p2lost, framesDecoded: frames, bytesReceived: 5000 * t },
          { type: 'inbound-rtp', kind: 'video', trackIdentifier: 'v2', packetsReceived: p3v, packetsLost: 0, framesDecoded: 50, bytesReceived: 10 },
        ]),
        (id) => owner[id],
        t * 1000,
      );
    expect(received(null, at(0, 0, 0, 500, 0))).toEqual({});
    const q = received(at(0, 0, 0, 500, 0), at(2, 1000, 10, 500, 50));
    expect(q.p2).toMatchObject({ level: 'good', fps: 25 });
    expect(q.p3?.level).toBe('lost');
    expect(received(at(0, 0, 0, 500, 0), at(2, 1000, 200, 600, 50)).p2?.level).toBe('weak');
    expect(received(at(0, 0, 0, 500, 0), at(2, 1000, 0, 600, 6)).p2?.level).toBe('weak');
  });

  it('tells udp, tcp and relay from the selected candidate pair', () => {
    const with_ = (local: Stat) => report([{ type: 'transport', id: 't', selectedCandidatePairId: 'cp' }, { type: 'candidate-pair', id: 'cp', localCandidateId: 'l' }, { id: 'l', ...local }]);
    expect(connectionType(with_({ type: 'local-candidate', candidateType: 'host', protocol: 'udp' }))).toBe('udp');
    expect(connectionType(with_({ type: 'local-candidate', candidateType: 'host', protocol: 'tcp' }))).toBe('tcp');
    expect(connectionType(with_({ type: 'local-candidate', candidateType: 'relay', protocol: 'udp' }))).toBe('relay');
    expect(connectionType(report([]))).toBeNull();
  });

  it("makes the page's own quality message from two samples", () => {
    const sub = (n: number, lost: number) => report([{ type: 'inbound-rtp', kind: 'video', packetsReceived: n, packetsLost: lost, bytesReceived: n * 1000, jitter: 0.012, framesPerSecond: 24 },
      { type: 'candidate-pair', nominated: true, currentRoundTripTime: 0.08 }]);
    const pub = (b: number) => report([{ type: 'outbound-rtp', bytesSent: b }]);
    const q = ownQuality(ownCounters(sub(100, 0), pub(0), 0), ownCounters(sub(290, 10), pub(500_000), 5000));
    expect(q).toEqual({ bitrateIn: 304_000, bitrateOut: 800_000, loss: 0.05, rttMs: 80, jitterMs: 12, fps: 24 });
  });

  it('names the largest video it sends (the top simulcast layer)', () => {
    const pub = report([
      { type: 'outbound-rtp', kind: 'video', bytesSent: 10, frameWidth: 160, frameHeight: 120 },
      { type: 'outbound-rtp', kind: 'video', bytesSent: 10, frameWidth: 640, frameHeight: 480 },
      { type: 'outbound-rtp', kind: 'audio', bytesSent: 10 },
    ]);
    const q = ownQuality(ownCounters(null, pub, 0), ownCounters(null, pub, 5000));
    expect([q.width, q.height]).toEqual([640, 480]);
  });
});
