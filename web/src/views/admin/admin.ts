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
