// The session log page's logic, kept out of the components so it is tested on its own: the
// quality samples shaped for uPlot, the participants seen in a timeline, and the filters.
import type { components } from '@/api/schema';

export type SessionLog = components['schemas']['SessionLog'];
export type SessionLogRow = components['schemas']['SessionLogRow'];
export type SessionEvent = components['schemas']['SessionEvent'];
export type QualitySeries = components['schemas']['QualitySeries'];
export type EventType = SessionEvent['type'];

/** A chart's metric: what it reads of one sample, and its unit for the axis. */
export interface Metric {
  key: 'bitrateOut' | 'bitrateIn' | 'loss' | 'rtt' | 'jitter' | 'fps' | 'height';
  unit: string;
  value: (s: QualitySeries, i: number) => number | null;
}

/**
 * The charts, one a metric. Bitrates in kbit/s; loss in percent; resolution as the height in
 * lines (720 for 1280x720), null where the client did not say (0 on the wire).
 */
export const METRICS: readonly Metric[] = [
  { key: 'bitrateOut', unit: 'kbit/s', value: (s, i) => num(s.bitrateOut[i]) / 1000 },
  { key: 'bitrateIn', unit: 'kbit/s', value: (s, i) => num(s.bitrateIn[i]) / 1000 },
  { key: 'loss', unit: '%', value: (s, i) => num(s.loss[i]) * 100 },
  { key: 'rtt', unit: 'ms', value: (s, i) => num(s.rttMs[i]) },
  { key: 'jitter', unit: 'ms', value: (s, i) => num(s.jitterMs[i]) },
  { key: 'fps', unit: 'fps', value: (s, i) => num(s.fps[i]) },
  { key: 'height', unit: 'p', value: (s, i) => (s.height[i] ? (s.height[i] as number) : null) },
];

function num(v: number | undefined): number {
  return v ?? 0;
}

/**
 * alignedTimes is the sorted union of every participant's sample times, in seconds (uPlot's
 * x), and for each participant the index in it of each of its samples. Samples come sorted
 * per participant (the server orders them by time), so this is a k-way merge, not a sort of
 * everything: 2 hours of 2-second samples for 5 participants is 18,000 times.
 */
export function alignedTimes(series: readonly QualitySeries[]): { xs: Float64Array; at: Int32Array[] } {
  let total = 0;
  for (const s of series) total += s.t.length;
  const all = new Float64Array(total);
  let n = 0;
  for (const s of series) for (const t of s.t) all[n++] = t;
  all.sort();
  const xsMs: number[] = [];
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) xsMs.push(all[i] as number);
  const at = series.map((s) => {
    const idx = new Int32Array(s.t.length);
    let j = 0;
    for (let i = 0; i < s.t.length; i++) {
      const t = s.t[i] as number;
      // Out of order (never from this server): fall back to a search for this sample.
      if (j > 0 && (xsMs[j - 1] as number) > t) j = 0;
      while ((xsMs[j] as number) < t) j++;
      idx[i] = j;
    }
    return idx;
  });
  return { xs: Float64Array.from(xsMs, (t) => t / 1000), at };
}

/**
 * plotData is uPlot's aligned data for one metric: x then one column a participant, null
 * where that participant has no sample at that time (uPlot's spanGaps joins across them).
 */
export function plotData(series: readonly QualitySeries[], aligned: { xs: Float64Array; at: Int32Array[] }, metric: Metric): (ArrayLike<number> | (number | null)[])[] {
  const cols: (number | null)[][] = series.map((s, k) => {
    const col: (number | null)[] = new Array(aligned.xs.length).fill(null);
    const at = aligned.at[k] as Int32Array;
    for (let i = 0; i < s.t.length; i++) col[at[i] as number] = metric.value(s, i);
    return col;
  });
  return [aligned.xs, ...cols];
}

/**
 * chartSamples keeps one measurer per participant, so a line does not zig-zag between two
 * points of view: the participant's own figures where it reports them (the browser app, every
 * 2 s), else the SFU's (every 5 s: WHIP feeds, older stations). The CSV export keeps both.
 */
export function chartSamples(s: QualitySeries): QualitySeries {
  const src = s.source ?? [];
  if (!src.includes('client') || !src.includes('server')) return s;
  const keep: number[] = [];
  src.forEach((v, i) => {
    if (v === 'client') keep.push(i);
  });
  const pick = <T>(a: T[]): T[] => keep.map((i) => a[i] as T);
  return { ...s, t: pick(s.t), bitrateIn: pick(s.bitrateIn), bitrateOut: pick(s.bitrateOut), loss: pick(s.loss), rttMs: pick(s.rttMs),
    jitterMs: pick(s.jitterMs), fps: pick(s.fps), width: pick(s.width), height: pick(s.height), source: pick(src) };
}

/** A distinct colour a participant, the same on every chart (colour-blind safe, Okabe-Ito). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'] as const;
export function colour(i: number): string {
  return PALETTE[i % PALETTE.length] as string;
}

/** One person's presence in the room, read from the timeline. */
export interface Attendee {
  participant: string;
  actor: string;
  role: string;
  institution: string;
  ip: string;
  userAgent: string;
  client: string;
  connection: string;
  joined: string;
  left: string;
  resumes: number;
}

/**
 * attendees lists who joined, in order of joining: a participant ID is one connection of one
 * person (a reconnect resumes it; a reload joins again with a new ID). The last known
 * connection type wins, as it is what carried most of the session.
 */
export function attendees(timeline: readonly SessionEvent[]): Attendee[] {
  const by = new Map<string, Attendee>();
  for (const e of timeline) {
    if (!e.participant) continue;
    let a = by.get(e.participant);
    if (!a && (e.type === 'join' || e.type === 'resume')) {
      a = { participant: e.participant, actor: e.actor, role: e.role, institution: e.institution, ip: e.ip ?? '', userAgent: e.userAgent ?? '',
        client: e.detail ?? '', connection: e.connection ?? '', joined: e.time, left: '', resumes: 0 };
      by.set(e.participant, a);
    }
    if (!a) continue;
    switch (e.type) {
      case 'resume':
        a.resumes++;
        a.left = '';
        break;
      case 'leave':
      case 'disconnect':
        a.left = e.time;
        break;
      case 'connection':
        if (e.connection) a.connection = e.connection;
        break;
    }
    if (e.connection && (e.type === 'join' || e.type === 'resume')) a.connection = e.connection;
    if (!a.ip && e.ip) a.ip = e.ip;
    if (!a.userAgent && e.userAgent) a.userAgent = e.userAgent;
  }
  return [...by.values()];
}

/** The timeline's groups, for the filter: what an admin asks about, in that order. */
export const EVENT_GROUPS: Readonly<Record<string, readonly EventType[]>> = {
  presence: ['join', 'leave', 'resume', 'disconnect', 'connection'],
  control: ['control'],
  viewing: ['view', 'annotation'],
  chat: ['chat'],
  media: ['muted', 'track', 'recording', 'quality'],
  report: ['report', 'consultation'],
  reads: ['read', 'other'],
};

/** countGroups counts a timeline's events by group, for the filter's badges. */
export function countGroups(timeline: readonly SessionEvent[]): Record<string, number> {
  const groupOf = new Map<string, string>();
  for (const [g, types] of Object.entries(EVENT_GROUPS)) for (const t of types) groupOf.set(t, g);
  const out: Record<string, number> = Object.fromEntries(Object.keys(EVENT_GROUPS).map((g) => [g, 0]));
  for (const e of timeline) {
    const g = groupOf.get(e.type) ?? 'reads';
    out[g] = (out[g] ?? 0) + 1;
  }
  return out;
}

/** filterTimeline keeps the events of the chosen groups. */
export function filterTimeline(timeline: readonly SessionEvent[], groups: readonly string[]): SessionEvent[] {
  const keep = new Set<string>(groups.flatMap((g) => EVENT_GROUPS[g] ?? []));
  return timeline.filter((e) => keep.has(e.type));
}

/** duration says a number of seconds as h:mm:ss (or m:ss under an hour). */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const CST = new Intl.DateTimeFormat('zh-CN', {
  timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

/**
 * chinaTime shows an instant in China Standard Time, whatever the browser's zone: the county's
 * records are read against its own clock (a log exported from a laptop set to UTC still agrees).
 */
export function chinaTime(iso: string | number | undefined): string {
  if (iso === undefined || iso === '') return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const p = Object.fromEntries(CST.formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour === '24' ? '00' : p.hour}:${p.minute}:${p.second}`;
}

/**
 * dayRange turns the date picker's two China-time days into the API's from and to instants:
 * from the first day's 00:00 to the end of the last day (exclusive next midnight), +08:00.
 */
export function dayRange(days: readonly [string, string] | null | undefined): { from?: string; to?: string } {
  if (!days || !days[0] || !days[1]) return {};
  const next = new Date(`${days[1]}T00:00:00+08:00`);
  next.setUTCDate(next.getUTCDate() + 1);
  return { from: new Date(`${days[0]}T00:00:00+08:00`).toISOString(), to: next.toISOString() };
}

/** chinaDay is a Date's calendar day in China (YYYY-MM-DD), for the date picker's defaults. */
export function chinaDay(d: Date): string {
  const p = Object.fromEntries(CST.formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day}`;
}
