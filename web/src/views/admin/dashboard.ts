// The dashboard's pure parts: GET /api/dashboard shaped for uPlot and for tables, durations
// and sizes as people read them.
import type { components } from '@/api/schema';
import type { Institution, User } from './admin';

export type Dashboard = components['schemas']['Dashboard'];
export type StaleStation = Dashboard['staleStations'][number];

/** uPlot's columnar data: x values, then one array per series. */
export type Columns = [number[], ...number[][]];

/** chinaMidnight is the Unix second a China day (YYYY-MM-DD) starts. */
export function chinaMidnight(day: string): number {
  return Date.parse(`${day}T00:00:00+08:00`) / 1000;
}

/** daySeries: consultations per day as [day start (Unix s), count], oldest first, gaps as 0. */
export function daySeries(perDay: Dashboard['consultations']['perDay']): Columns {
  const counts = new Map(perDay.map((d) => [d.day, d.count]));
  const days = [...counts.keys()].sort();
  if (!days.length) return [[], []];
  const xs: number[] = [];
  const ys: number[] = [];
  const last = chinaMidnight(days[days.length - 1]!);
  for (let x = chinaMidnight(days[0]!); x <= last; x += 86_400) {
    xs.push(x);
    ys.push(counts.get(new Date((x + 8 * 3600) * 1000).toISOString().slice(0, 10)) ?? 0);
  }
  return [xs, ys];
}

/** monthSeries: storage growth per month as [month start (Unix s, China), bytes], oldest first. */
export function monthSeries(perMonth: Dashboard['storage']['perMonth']): Columns {
  const sorted = [...perMonth].sort((a, b) => a.month.localeCompare(b.month));
  return [sorted.map((m) => chinaMidnight(`${m.month}-01`)), sorted.map((m) => m.bytes)];
}

export interface InstitutionRow {
  id: number;
  name: string;
  requested: number;
  received: number;
}

/** institutionRows names the per-institution counts, busiest first. */
export function institutionRows(per: Dashboard['consultations']['perInstitution'], institutions: Institution[]): InstitutionRow[] {
  const names = new Map(institutions.map((i) => [i.id, i.name]));
  return per
    .map((p) => ({ id: p.institutionId, name: names.get(p.institutionId) ?? `#${p.institutionId}`, requested: p.requested, received: p.received }))
    .sort((a, b) => b.requested + b.received - (a.requested + a.received) || a.name.localeCompare(b.name, 'zh-CN'));
}

export interface DoctorRow {
  id: number;
  name: string;
  institution: string;
  count: number;
}

/** doctorRows names the per-doctor counts, most first. */
export function doctorRows(per: Dashboard['consultations']['perDoctor'], users: User[], institutions: Institution[]): DoctorRow[] {
  const byId = new Map(users.map((u) => [u.id, u]));
  const insts = new Map(institutions.map((i) => [i.id, i.name]));
  return per
    .map((p) => {
      const u = byId.get(p.doctorId);
      return { id: p.doctorId, name: u ? u.displayName || u.username : `#${p.doctorId}`, institution: u?.institutionId ? (insts.get(u.institutionId) ?? '') : '', count: p.count };
    })
    .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name, 'zh-CN'));
}

const UNITS: Record<'zh' | 'en', [number, string][]> = {
  zh: [[86_400, ' 天'], [3600, ' 小时'], [60, ' 分钟'], [1, ' 秒']],
  en: [[86_400, ' d'], [3600, ' h'], [60, ' min'], [1, ' s']],
};

/** humanDuration writes seconds as its two largest units, "2 小时 5 分钟" / "2 h 5 min"; 0 or less is "—". */
export function humanDuration(seconds: number, locale: string): string {
  if (!(seconds > 0)) return '—';
  const units = UNITS[locale.startsWith('zh') ? 'zh' : 'en'];
  const rest = Math.max(1, Math.round(seconds));
  const i = units.findIndex(([size]) => rest >= size);
  const [size, name] = units[i]!;
  const n = Math.floor(rest / size);
  const parts = [`${n}${name}`];
  const next = units[i + 1];
  const m = next ? Math.floor((rest - n * size) / next[0]) : 0;
  if (next && m > 0) parts.push(`${m}${next[1]}`);
  return parts.join(' ');
}

/** humanBytes writes a size in binary units, three significant digits: "1.50 GB", "820 MB". */
export function humanBytes(bytes: number, locale: string): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let v = Math.max(0, bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return `${new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v)} ${units[i]}`;
}

/** since is how long ago a moment was, as humanDuration writes it; "" for none. */
export function since(iso: string | undefined, now: Date, locale: string): string {
  if (!iso) return '';
  return humanDuration((now.getTime() - Date.parse(iso)) / 1000, locale);
}
