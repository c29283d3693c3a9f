import { describe, it, expect, beforeEach } from 'vitest';
import { createPinia, setActivePinia } from 'pinia';
import {
  GROUPS, GROUP_STATES, ageAt, countsByGroup, countItems, groupOf, nextDay, queryOf, sortItems, useWorklistStore,
  type ConsultState, type WorklistItem,
} from './worklist';
import type { components } from '@/api/schema';

type Worklist = components['schemas']['Worklist'];

let seq = 0;
function item(over: Partial<WorklistItem> = {}): WorklistItem {
  seq++;
  return {
    id: seq, state: 'requested', urgency: 'routine', requestingInstitutionId: 10, requestingInstitutionName: '龙山村卫生室',
    requestedBy: 1, requestedByName: '蓝秀英', participants: [], sessions: [], modalities: ['CT'],
    createdAt: `2026-03-0${(seq % 9) + 1}T08:00:00Z`, updatedAt: '2026-03-01T08:00:00Z',
    patient: { id: 'P' + seq, name: '患者' + seq, sex: 'F', birthDate: '19700101' },
    studyUIDs: ['1.2.3'], clinicalQuestion: '咳嗽', purpose: '明确诊断', targetInstitutionId: 1, consentConfirmed: true,
    recordingConsent: false,
    ...over,
  } as WorklistItem;
}

const allCounts = (items: WorklistItem[]) => {
  const c = countItems(items);
  const out = {} as Record<ConsultState, number>;
  for (const st of ['requested', 'accepted', 'declined', 'scheduled', 'live', 'reporting', 'signed', 'closed', 'cancelled'] as ConsultState[]) out[st] = c[st] ?? 0;
  return out;
};

describe('state mapping', () => {
  it('puts every state in exactly one tab', () => {
    const states: ConsultState[] = ['requested', 'accepted', 'declined', 'scheduled', 'live', 'reporting', 'signed', 'closed', 'cancelled'];
    for (const st of states) {
      expect(GROUPS.filter((g) => GROUP_STATES[g].includes(st))).toHaveLength(1);
    }
    expect(groupOf('accepted')).toBe('scheduled');
    expect(groupOf('reporting')).toBe('toReport');
    expect(groupOf('declined')).toBe('done');
    expect(groupOf('live')).toBe('live');
  });

  it('adds the per-state counts into tab counts', () => {
    expect(countsByGroup({ requested: 3, accepted: 1, scheduled: 2, live: 0, reporting: 4, signed: 5, cancelled: 1 })).toEqual({
      requested: 3, scheduled: 3, live: 0, toReport: 4, done: 6,
    });
    expect(countsByGroup({})).toEqual({ requested: 0, scheduled: 0, live: 0, toReport: 0, done: 0 });
  });
});

describe('ordering and rows', () => {
  it('puts emergencies, then urgent, first; then the soonest time, then the newest', () => {
    const a = item({ urgency: 'routine', createdAt: '2026-03-05T00:00:00Z' });
    const b = item({ urgency: 'urgent', createdAt: '2026-03-01T00:00:00Z' });
    const c = item({ urgency: 'emergency', createdAt: '2026-03-02T00:00:00Z' });
    const d = item({ urgency: 'routine', createdAt: '2026-03-01T00:00:00Z', scheduledAt: '2026-03-09T01:00:00Z' });
    const e = item({ urgency: 'routine', createdAt: '2026-03-02T00:00:00Z', proposedAt: '2026-03-08T01:00:00Z' });
    expect(sortItems([a, b, c, d, e]).map((x) => x.id)).toEqual([c.id, b.id, e.id, d.id, a.id]);
  });

  it('computes ages from DICOM dates', () => {
    const now = new Date(2026, 2, 14);
    expect(ageAt('19700314', now)).toBe(56);
    expect(ageAt('19700315', now)).toBe(55);
    expect(ageAt('', now)).toBeUndefined();
    expect(ageAt('1970', now)).toBeUndefined();
  });

  it('sends the server filters and an exclusive last day', () => {
    expect(nextDay('2026-02-28')).toBe('2026-03-01');
    expect(nextDay('2026-12-31')).toBe('2027-01-01');
    expect(queryOf({ group: 'live', institutionId: 0, urgency: '', from: '', to: '' })).toEqual({});
    expect(queryOf({ group: 'live', institutionId: 7, urgency: 'urgent', from: '2026-03-01', to: '2026-03-02' }, ['live'])).toEqual({
      institutionId: 7, urgency: 'urgent', from: '2026-03-01', to: '2026-03-03', state: 'live',
    });
  });
});

describe('useWorklistStore', () => {
  beforeEach(() => setActivePinia(createPinia()));

  it('loads once and switches tabs without asking again', async () => {
    const items = [item(), item({ state: 'scheduled' }), item({ state: 'accepted' }), item({ state: 'reporting' }), item({ state: 'signed' })];
    const calls: unknown[] = [];
    const store = useWorklistStore();
    store.setFetcher(async (q) => {
      calls.push(q);
      return { items, counts: allCounts(items), total: items.length } as Worklist;
    });
    await store.load();
    expect(store.loaded).toBe(true);
    expect(store.groupCounts).toEqual({ requested: 1, scheduled: 2, live: 0, toReport: 1, done: 1 });
    expect(store.visible.map((x) => x.state)).toEqual(['requested']);
    await store.selectGroup('scheduled');
    expect(store.visible.map((x) => x.state).sort()).toEqual(['accepted', 'scheduled']);
    await store.selectGroup('done');
    expect(store.visible).toHaveLength(1);
    expect(calls).toHaveLength(1);
    expect(store.institutions.get(10)).toBe('龙山村卫生室');
  });

  it('asks the server for a tab when the list was cut short', async () => {
    const store = useWorklistStore();
    const calls: Record<string, unknown>[] = [];
    store.setFetcher(async (q) => {
      calls.push(q);
      const items = q.state ? [item({ state: 'signed' })] : [item()];
      return { items, counts: { requested: 1, signed: 900 }, total: 901 } as unknown as Worklist;
    });
    await store.load();
    expect(store.truncated).toBe(true);
    await store.selectGroup('done');
    expect(calls[1]).toEqual({ state: 'signed,closed,declined,cancelled' });
    expect(store.visible.map((x) => x.state)).toEqual(['signed']);
    expect(store.groupCounts.done).toBe(900);
  });

  it('moves a row and its count when an action changes its state', async () => {
    const it0 = item();
    const store = useWorklistStore();
    store.setFetcher(async () => ({ items: [it0], counts: { requested: 1 }, total: 1 }) as unknown as Worklist);
    await store.load();
    const consultation: Record<string, unknown> = { ...it0, state: 'scheduled', assignedDoctorId: 5 };
    delete consultation.requestingInstitutionName;
    delete consultation.modalities;
    store.replace(consultation as unknown as Parameters<typeof store.replace>[0], '韦东平');
    expect(store.groupCounts.requested).toBe(0);
    expect(store.groupCounts.scheduled).toBe(1);
    expect(store.items[0]?.assignedDoctorName).toBe('韦东平');
    expect(store.items[0]?.requestingInstitutionName).toBe('龙山村卫生室');
  });

  it('drops an older answer that arrives after a newer one', async () => {
    const store = useWorklistStore();
    let release: (v: Worklist) => void = () => undefined;
    const slow = new Promise<Worklist>((r) => (release = r));
    let n = 0;
    store.setFetcher(async () => {
      n++;
      if (n === 1) return slow;
      return { items: [item({ state: 'live' })], counts: { live: 1 }, total: 1 } as unknown as Worklist;
    });
    const first = store.load();
    await store.load();
    release({ items: [item()], counts: { requested: 1 }, total: 1 } as unknown as Worklist);
    await first;
    expect(store.groupCounts.live).toBe(1);
    expect(store.groupCounts.requested).toBe(0);
  });
});
