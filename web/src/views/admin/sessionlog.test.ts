import { describe, expect, it } from 'vitest';
import { METRICS, alignedTimes, chartSamples, attendees, chinaDay, chinaTime, countGroups, dayRange, duration, filterTimeline, plotData, type QualitySeries, type SessionEvent } from './sessionlog';

function series(participant: string, t: number[], extra: Partial<QualitySeries> = {}): QualitySeries {
  const z = t.map(() => 0);
  return { participant, username: participant, t, bitrateIn: z, bitrateOut: t.map((_, i) => (i + 1) * 1000), loss: t.map(() => 0.02), rttMs: z, jitterMs: z,
    fps: z, width: z, height: t.map((_, i) => (i === 0 ? 0 : 720)), source: t.map(() => 'client'), resumes: [], ...extra };
}

function ev(type: SessionEvent['type'], participant: string, time: string, more: Partial<SessionEvent> = {}): SessionEvent {
  return { seq: 0, time, type, action: `live.${type}`, actor: participant.toUpperCase(), role: 'doctor', institution: 'H', participant, ...more };
}

describe('quality samples for uPlot', () => {
  it('merges participants on one time axis, in seconds, with gaps where one has no sample', () => {
    const a = series('a', [1000, 3000, 5000]);
    const b = series('b', [2000, 3000, 6000]);
    const al = alignedTimes([a, b]);
    expect([...al.xs]).toEqual([1, 2, 3, 5, 6]);
    expect([...al.at[0]!]).toEqual([0, 2, 3]);
    expect([...al.at[1]!]).toEqual([1, 2, 4]);
    const [xs, ca, cb] = plotData([a, b], al, METRICS[0]!);
    expect(xs).toBe(al.xs);
    expect(ca).toEqual([1, null, 2, 3, null]); // kbit/s
    expect(cb).toEqual([null, 1, 2, null, 3]);
  });

  it('reads each metric in its unit, and an unknown resolution as a gap, not 0', () => {
    const a = series('a', [0, 1000]);
    const al = alignedTimes([a]);
    const loss = plotData([a], al, METRICS.find((m) => m.key === 'loss')!);
    expect(loss[1]).toEqual([2, 2]);
    const height = plotData([a], al, METRICS.find((m) => m.key === 'height')!);
    expect(height[1]).toEqual([null, 720]);
  });

  it('keeps every sample of 2 hours for 5 participants, sample times on the axis once each', () => {
    const start = Date.UTC(2026, 11, 7, 2);
    const parts = Array.from({ length: 5 }, (_, k) => series(`p${k}`, Array.from({ length: 3600 }, (_, i) => start + i * 2000 + k * 7)));
    const al = alignedTimes(parts);
    expect(al.xs.length).toBe(5 * 3600);
    for (let i = 1; i < al.xs.length; i++) expect(al.xs[i]! > al.xs[i - 1]!).toBe(true);
    const cols = plotData(parts, al, METRICS[0]!);
    const nonNull = cols.slice(1).reduce((n, c) => n + (c as (number | null)[]).filter((v) => v !== null).length, 0);
    expect(nonNull).toBe(5 * 3600);
  });
});

describe('one measurer a line', () => {
  it("plots a participant's own figures where it has them, else the server's", () => {
    const mixed = series('a', [0, 1000, 2000, 3000], { source: ['server', 'client', 'server', 'client'] });
    expect(chartSamples(mixed).t).toEqual([1000, 3000]);
    expect(chartSamples(mixed).bitrateOut).toEqual([2, 4].map((k) => k * 1000));
    const serverOnly = series('b', [0, 5000], { source: ['server', 'server'] });
    expect(chartSamples(serverOnly)).toBe(serverOnly);
  });
});

describe('the timeline', () => {
  const tl: SessionEvent[] = [
    ev('join', 'p1', '2026-12-07T02:00:00Z', { detail: 'web', ip: '10.0.0.2', userAgent: 'Chrome', connection: 'udp' }),
    ev('join', 'p2', '2026-12-07T02:00:05Z', { detail: 'station', ip: '10.0.0.3' }),
    ev('connection', 'p2', '2026-12-07T02:00:06Z', { connection: 'relay' }),
    ev('chat', 'p1', '2026-12-07T02:01:00Z', { detail: 'hello' }),
    ev('disconnect', 'p2', '2026-12-07T02:02:00Z'),
    ev('resume', 'p2', '2026-12-07T02:02:10Z', { connection: 'tcp' }),
    ev('leave', 'p1', '2026-12-07T02:30:00Z'),
    { seq: 9, time: '2026-12-07T02:31:00Z', type: 'read', action: 'study.read', actor: 'x', role: 'doctor', institution: 'H' },
  ];

  it('lists who joined with device, IP, connection and reconnects', () => {
    const a = attendees(tl);
    expect(a.map((x) => x.participant)).toEqual(['p1', 'p2']);
    expect(a[0]).toMatchObject({ actor: 'P1', ip: '10.0.0.2', userAgent: 'Chrome', client: 'web', connection: 'udp', left: '2026-12-07T02:30:00Z', resumes: 0 });
    expect(a[1]).toMatchObject({ connection: 'tcp', resumes: 1, left: '' });
  });

  it('counts and filters by group', () => {
    const c = countGroups(tl);
    expect(c.presence).toBe(6);
    expect(c.chat).toBe(1);
    expect(c.reads).toBe(1);
    expect(filterTimeline(tl, ['chat']).map((e) => e.type)).toEqual(['chat']);
    expect(filterTimeline(tl, []).length).toBe(0);
  });
});

describe('times', () => {
  it('says durations as m:ss or h:mm:ss', () => {
    expect(duration(0)).toBe('0:00');
    expect(duration(75)).toBe('1:15');
    expect(duration(3 * 3600 + 62)).toBe('3:01:02');
  });

  it('shows instants in China time whatever the browser zone', () => {
    expect(chinaTime('2026-12-07T16:30:05Z')).toBe('2026-12-08 00:30:05');
    expect(chinaTime(undefined)).toBe('—');
    expect(chinaTime('nonsense')).toBe('—');
    expect(chinaDay(new Date('2026-12-07T16:30:05Z'))).toBe('2026-12-08');
  });

  it('turns China days into an instant range ending at the next midnight', () => {
    expect(dayRange(['2026-12-07', '2026-12-07'])).toEqual({ from: '2026-12-06T16:00:00.000Z', to: '2026-12-07T16:00:00.000Z' });
    expect(dayRange(['2026-12-31', '2027-01-01'])).toEqual({ from: '2026-12-30T16:00:00.000Z', to: '2027-01-01T16:00:00.000Z' });
    expect(dayRange(null)).toEqual({});
  });
});
