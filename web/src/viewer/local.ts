// The clinic's own station as a source of pixels (client/localweb): at a village clinic the
// station that just uploaded a study still has it, so the viewer reads metadata and frames
// from http://127.0.0.1:11180 instead of downloading back over 4G what was sent. The county
// issues a short-lived grant for the study (POST /api/local-grants); the station checks it with
// the county. Used only when the station answers at once and has every series the county
// lists, instance for instance; otherwise the county, as before.
import { api } from '@/api/client';
import type { SeriesSummary } from './series';

/** The station's local DICOMweb, as `sanping-station -local-addr` serves it by default. */
export const DEFAULT_LOCAL_BASE = 'http://127.0.0.1:11180';
/** localStorage key a clinic sets to another address, or to "off". */
export const LOCAL_BASE_KEY = 'sanping.localBase';
/** How long the station has to answer its health check before the county is used. */
export const PROBE_MS = 300;

/** localBase is the station's origin, or '' when a clinic turned it off. */
export function localBase(): string {
  let v: string | null = null;
  try {
    v = globalThis.localStorage?.getItem(LOCAL_BASE_KEY) ?? null;
  } catch {
    // storage refused (private mode): the default
  }
  if (v === 'off') return '';
  return (v || DEFAULT_LOCAL_BASE).replace(/\/+$/, '');
}

interface Grant {
  token: string;
  expires: number;
}

const grants = new Map<string, Promise<Grant>>();

/** grantFor asks the county for a grant to read study locally, reused until a minute before it ends. */
function grantFor(study: string): Promise<Grant> {
  const cached = grants.get(study);
  const fresh = (g: Grant): boolean => g.expires - Date.now() > 60_000;
  const ask = async (): Promise<Grant> => {
    const { data } = await api.POST('/api/local-grants', { body: { study } });
    if (!data) throw new Error('no grant');
    return { token: data.token, expires: Date.parse(data.expiresAt) };
  };
  const p = (cached ?? Promise.reject(new Error('none'))).then((g) => (fresh(g) ? g : ask()), ask);
  grants.set(study, p);
  p.catch(() => grants.delete(study));
  return p;
}

/** authHeaders are the headers a request to the station for study needs. */
export async function authHeaders(study: string): Promise<Record<string, string>> {
  const g = await grantFor(study);
  return { Authorization: `Bearer ${g.token}` };
}

async function fetchWithin(url: string, ms: number, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { headers, signal: AbortSignal.timeout(ms), credentials: 'omit', cache: 'no-store' });
}

/**
 * localSource returns the station's origin when it can show the whole study as the county
 * lists it, else null. It never throws: any failure means the county.
 */
export async function localSource(study: string, county: SeriesSummary[]): Promise<string | null> {
  const base = localBase();
  if (!base || !county.length) return null;
  try {
    // The probe first: a screen without a station (the county's doctors) asks for no grant,
    // so the audit trail records local reads only where a station answered.
    const health = await fetchWithin(`${base}/dicom-web/health`, PROBE_MS);
    if (!health.ok) return null;
    const headers = await authHeaders(study);
    const res = await fetchWithin(`${base}/dicom-web/studies/${encodeURIComponent(study)}/series`, 2000, { ...headers, Accept: 'application/dicom+json' });
    if (!res.ok) return null;
    const list = (await res.json()) as Record<string, { Value?: unknown[] }>[];
    const have = new Map<string, number>();
    for (const o of list) have.set(String(o['0020000E']?.Value?.[0] ?? ''), Number(o['00201209']?.Value?.[0] ?? 0));
    return county.every((s) => have.get(s.uid) === s.instances) ? base : null;
  } catch {
    return null;
  }
}

/** isLocal tells whether an image ID or URL points at the station, and for which study. */
export function studyOfLocalURL(url: string): string | null {
  const base = localBase();
  if (!base) return null;
  const at = url.indexOf(`${base}/dicom-web/studies/`);
  if (at < 0) return null;
  const rest = url.slice(at + base.length + '/dicom-web/studies/'.length);
  return decodeURIComponent(rest.split('/')[0] ?? '');
}
