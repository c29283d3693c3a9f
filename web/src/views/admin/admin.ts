// What the admin screens share: the API's types, a temporary password, the station's login
// line, and the institution tree.
import type { components } from '@/api/schema';

export type Institution = components['schemas']['Institution'];
export type InstitutionKind = components['schemas']['InstitutionKind'];
export type User = components['schemas']['User'];
export type NewUser = components['schemas']['NewUser'];
export type Token = components['schemas']['Token'];
export type TokenCreated = components['schemas']['TokenCreated'];
export type Role = components['schemas']['Role'];

// No 0/O, 1/l/I: read aloud over the phone to a village clinic, or copied by hand.
const ALPHABET = 'abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/**
 * temporaryPassword makes a password the user must replace at first sign-in (the server sets
 * mustChangePassword): 12 characters from 55, about 69 bits, from the browser's CSPRNG.
 */
export function temporaryPassword(random: (a: Uint32Array) => Uint32Array = (a) => crypto.getRandomValues(a)): string {
  const out: string[] = [];
  const limit = Math.floor(2 ** 32 / ALPHABET.length) * ALPHABET.length; // no modulo bias
  while (out.length < 12) {
    const [v] = random(new Uint32Array(1));
    if (v !== undefined && v < limit) out.push(ALPHABET[v % ALPHABET.length]!);
  }
  return out.join('');
}

/** stationLoginLine is what a clinic's IT person types on the station (client/README.md). */
export function stationLoginLine(origin: string, secret: string): string {
  return `sanping-station login -server ${origin} -token ${secret}`;
}

export interface InstitutionNode {
  id: number;
  label: string;
  institution: Institution;
  children: InstitutionNode[];
}

/** institutionTree nests institutions under their parents, each level by kind then name. */
export function institutionTree(list: Institution[]): InstitutionNode[] {
  const order: Record<string, number> = { hospital: 0, township: 1, clinic: 2 };
  const nodes = new Map<number, InstitutionNode>(list.map((i) => [i.id, { id: i.id, label: i.name, institution: i, children: [] }]));
  const roots: InstitutionNode[] = [];
  for (const n of nodes.values()) {
    const parent = n.institution.parentId ? nodes.get(n.institution.parentId) : undefined;
    (parent ? parent.children : roots).push(n);
  }
  const sort = (ns: InstitutionNode[]): void => {
    ns.sort((a, b) => (order[a.institution.kind] ?? 9) - (order[b.institution.kind] ?? 9) || a.label.localeCompare(b.label, 'zh-CN'));
    ns.forEach((n) => sort(n.children));
  };
  sort(roots);
  return roots;
}

/** parentKinds: the kinds an institution of this kind may hang under (docs/openapi.yaml). */
export function parentKinds(kind: InstitutionKind): InstitutionKind[] {
  if (kind === 'hospital') return ['hospital'];
  if (kind === 'township') return ['hospital'];
  return ['township', 'hospital'];
}

export type ActiveSession = components['schemas']['ActiveSession'];
export type StationReport = NonNullable<Token['status']>;

/** A queue waiting this long since the station's last success (or with none) is a warning. */
export const QUEUE_STALE_MS = 60 * 60 * 1000;

export interface StationQueueView {
  bundles: number;
  files: number;
  /** megabytes, one decimal, as `sanping-station status` writes them */
  mb: string;
  /** why the row carries a warning tag: 'error' (the last upload failed), 'stale' (a queue and no success for an hour), or none */
  warning: 'error' | 'stale' | null;
}

/**
 * stationQueue is what the station table shows of a token's last report (null: it never
 * reported): the queue, and a warning when the last upload failed or a queue has waited an
 * hour without a success.
 */
export function stationQueue(report: StationReport | undefined, now: number): StationQueueView | null {
  if (!report) return null;
  const q = report.queue;
  let warning: StationQueueView['warning'] = null;
  if (report.lastError) warning = 'error';
  else if (q.bundles > 0 || q.files > 0) {
    const last = report.lastSuccess ? Date.parse(report.lastSuccess) : NaN;
    if (Number.isNaN(last) || now - last >= QUEUE_STALE_MS) warning = 'stale';
  }
  return { bundles: q.bundles, files: q.files, mb: (q.bytes / 1e6).toFixed(1), warning };
}
