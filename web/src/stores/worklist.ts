import { defineStore } from 'pinia';
import { computed, reactive, ref } from 'vue';
import { api } from '@/api/client';
import type { components } from '@/api/schema';

export type WorklistItem = components['schemas']['WorklistItem'];
export type Consultation = components['schemas']['Consultation'];
export type ConsultState = components['schemas']['State'];
export type Urgency = 'routine' | 'urgent' | 'emergency';

/** The worklist's tabs: where a consultation stands from the doctor's side. */
export const GROUPS = ['requested', 'scheduled', 'live', 'toReport', 'done'] as const;
export type Group = (typeof GROUPS)[number];

/**
 * The states of each tab. Accepted (a doctor assigned, no time yet) waits with the scheduled
 * ones: both need the doctor to set or keep a time. Declined and cancelled are done too.
 */
export const GROUP_STATES: Record<Group, ConsultState[]> = {
  requested: ['requested'],
  scheduled: ['accepted', 'scheduled'],
  live: ['live'],
  toReport: ['reporting'],
  done: ['signed', 'closed', 'declined', 'cancelled'],
};

export function groupOf(state: ConsultState): Group {
  return GROUPS.find((g) => GROUP_STATES[g].includes(state)) ?? 'done';
}

/** countsByGroup adds up the server's per-state counts into the tabs' counts. */
export function countsByGroup(counts: Partial<Record<ConsultState, number>>): Record<Group, number> {
  const out = { requested: 0, scheduled: 0, live: 0, toReport: 0, done: 0 } as Record<Group, number>;
  for (const g of GROUPS) for (const st of GROUP_STATES[g]) out[g] += counts[st] ?? 0;
  return out;
}

/** countItems counts loaded items per state (what the server's counts say when nothing is left out). */
export function countItems(items: WorklistItem[]): Partial<Record<ConsultState, number>> {
  const out: Partial<Record<ConsultState, number>> = {};
  for (const it of items) out[it.state] = (out[it.state] ?? 0) + 1;
  return out;
}

const URGENCY_RANK: Record<string, number> = { emergency: 0, urgent: 1, routine: 2 };

/** wishedTime is when the session is (scheduled) or was asked for (proposed), if known. */
export function wishedTime(it: WorklistItem): string | undefined {
  return it.scheduledAt ?? it.proposedAt;
}

/**
 * sortItems: the most urgent first; within an urgency, those with a time soonest first, then
 * the newest requests.
 */
export function sortItems(items: WorklistItem[]): WorklistItem[] {
  return [...items].sort((a, b) => {
    const u = (URGENCY_RANK[a.urgency] ?? 3) - (URGENCY_RANK[b.urgency] ?? 3);
    if (u !== 0) return u;
    const ta = wishedTime(a);
    const tb = wishedTime(b);
    if (ta && tb && ta !== tb) return ta < tb ? -1 : 1;
    if (ta && !tb) return -1;
    if (tb && !ta) return 1;
    if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt ? -1 : 1;
    return b.id - a.id;
  });
}

export interface Filters {
  group: Group;
  /** The requesting institution; 0: any. */
  institutionId: number;
  urgency: Urgency | '';
  /** Requested on or after this day (YYYY-MM-DD, China time); '' for no bound. */
  from: string;
  /** Requested on or before this day (inclusive); ''. */
  to: string;
}

/** nextDay turns an inclusive last day into the API's exclusive bound. */
export function nextDay(day: string): string {
  const [y = 0, m = 1, d = 1] = day.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + 1));
  return t.toISOString().slice(0, 10);
}

/** queryOf is the API query for the filters the server applies (all but the tab). */
export function queryOf(f: Filters, states?: ConsultState[]) {
  return {
    ...(f.institutionId ? { institutionId: f.institutionId } : {}),
    ...(f.urgency ? { urgency: f.urgency } : {}),
    ...(f.from ? { from: f.from } : {}),
    ...(f.to ? { to: nextDay(f.to) } : {}),
    ...(states ? { state: states.join(',') } : {}),
  };
}

/** ageAt is the age in whole years on a day, from a DICOM date (YYYYMMDD); undefined if unknown. */
export function ageAt(birthDate: string | undefined, now: Date): number | undefined {
  if (!birthDate || !/^\d{8}$/.test(birthDate)) return undefined;
  const y = Number(birthDate.slice(0, 4));
  const m = Number(birthDate.slice(4, 6));
  const d = Number(birthDate.slice(6, 8));
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d)) age--;
  return age >= 0 ? age : undefined;
}

/** One answer of GET /api/worklist: how the fetch is injected in tests. */
export type WorklistFetch = (query: ReturnType<typeof queryOf>) => Promise<components['schemas']['Worklist']>;

const fetchWorklist: WorklistFetch = async (query) => {
  const { data } = await api.GET('/api/worklist', { params: { query } });
  if (!data) throw new Error('empty worklist answer');
  return data;
};

/**
 * useWorklistStore: the doctor's worklist, loaded in one request. The server applies the
 * institution, urgency and date filters and counts each state; the tabs filter what is loaded
 * (instantly, no request over 4G), unless the server left some out, when a tab asks for its own.
 */
export const useWorklistStore = defineStore('worklist', () => {
  const items = ref<WorklistItem[]>([]);
  const counts = ref<Partial<Record<ConsultState, number>>>({});
  const total = ref(0);
  /** The loaded items are only those of these states (a truncated list's tab), or all. */
  const loadedStates = ref<ConsultState[] | null>(null);
  const loaded = ref(false);
  const loading = ref(false);
  /** Institutions seen in any answer, for the filter: it keeps its choices while filtered. */
  const institutions = reactive(new Map<number, string>());
  const filters = reactive<Filters>({ group: 'requested', institutionId: 0, urgency: '', from: '', to: '' });
  let fetcher: WorklistFetch = fetchWorklist;
  let generation = 0;

  const groupCounts = computed(() => countsByGroup(counts.value));
  const visible = computed(() => sortItems(items.value.filter((it) => groupOf(it.state) === filters.group)));
  const truncated = computed(() => loadedStates.value === null && total.value > items.value.length);

  /** load fetches the worklist for the current filters; an older answer arriving late is dropped. */
  async function load(states?: ConsultState[]): Promise<void> {
    const mine = ++generation;
    loading.value = true;
    try {
      const wl = await fetcher(queryOf(filters, states));
      if (mine !== generation) return;
      items.value = wl.items;
      counts.value = wl.counts;
      total.value = wl.total;
      loadedStates.value = states ?? null;
      for (const it of wl.items) institutions.set(it.requestingInstitutionId, it.requestingInstitutionName);
      loaded.value = true;
    } finally {
      if (mine === generation) loading.value = false;
    }
  }

  /** selectGroup switches tab: from what is loaded when it is all there, else from the server. */
  async function selectGroup(g: Group): Promise<void> {
    filters.group = g;
    if (loadedStates.value === null && !truncated.value) return;
    const want = GROUP_STATES[g];
    if (loadedStates.value?.join() !== want.join()) await load(want);
  }

  /**
   * replace puts a consultation changed by an action (accept, schedule...) in place, keeping
   * the row's names, and moves its count to its new state.
   */
  function replace(c: Consultation, assignedDoctorName?: string): void {
    const old = items.value.find((x) => x.id === c.id);
    if (!old) return;
    const it: WorklistItem = { ...old, ...c, assignedDoctorName: assignedDoctorName ?? old.assignedDoctorName };
    items.value = items.value.map((x) => (x.id === it.id ? it : x));
    if (old.state !== it.state) {
      counts.value = { ...counts.value, [old.state]: Math.max(0, (counts.value[old.state] ?? 1) - 1), [it.state]: (counts.value[it.state] ?? 0) + 1 };
    }
  }

  function setFetcher(f: WorklistFetch): void {
    fetcher = f;
  }

  return { items, counts, total, loaded, loading, institutions, filters, groupCounts, visible, truncated, load, selectGroup, replace, setFetcher };
});
