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
