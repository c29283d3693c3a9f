// How the doctor screens write times, people and sizes: China time whatever the device says.
const ZONE = 'Asia/Shanghai';

export function dateTime(iso: string | undefined, locale: string): string {
  if (!iso) return '';
  return new Intl.DateTimeFormat(locale, {
    timeZone: ZONE, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
  }).format(new Date(iso));
}

export function clock(d: Date, locale: string): string {
  return new Intl.DateTimeFormat(locale, { timeZone: ZONE, hour: '2-digit', minute: '2-digit', hour12: false }).format(d);
}

/** shortHash is the first and last 8 hex digits of a SHA-256, as people read one aloud. */
export function shortHash(sha: string | undefined): string {
  if (!sha) return '';
  return sha.length > 20 ? `${sha.slice(0, 8)}…${sha.slice(-8)}` : sha;
}

// The date picker works in the device's wall clock; consultations are arranged in China time
// whatever the device's zone. These carry a picked wall-clock time over as China time and back.
const pad = (n: number) => String(n).padStart(2, '0');

export function chinaISOFromPicker(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:00+08:00`;
}

export function pickerFromISO(iso: string): Date {
  const china = new Date(new Date(iso).getTime() + 8 * 3600_000);
  return new Date(china.getUTCFullYear(), china.getUTCMonth(), china.getUTCDate(), china.getUTCHours(), china.getUTCMinutes());
}
