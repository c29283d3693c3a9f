import { describe, expect, it } from 'vitest';
import { institutionTree, parentKinds, QUEUE_STALE_MS, stationLoginLine, stationQueue, temporaryPassword, type Institution, type StationReport } from './admin';

const inst = (id: number, name: string, kind: Institution['kind'], parentId?: number): Institution => ({ id, name, kind, code: `c${id}`, parentId, createdAt: '2026-12-01T00:00:00Z' });

describe('admin helpers', () => {
  it('makes 12-character temporary passwords without look-alike characters', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = temporaryPassword();
      expect(p).toMatch(/^[a-km-np-zA-HJ-NP-Z2-9]{12}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(200);
  });

  it('draws again rather than bias the alphabet', () => {
    const values = [2 ** 32 - 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    let i = 0;
    const p = temporaryPassword((a) => {
      a[0] = values[i++]!;
      return a;
    });
    expect(p).toBe('abcdefghjkmn'); // the first value is past the last whole cycle: drawn again
  });

  it('writes the station login line', () => {
    expect(stationLoginLine('https://sanping.dahua.gov.cn', 'spt_abc')).toBe('sanping-station login -server https://sanping.dahua.gov.cn -token spt_abc');
  });

  it('nests institutions under parents, hospitals first, then by name', () => {
    const tree = institutionTree([inst(3, '弄拉村卫生室', 'clinic', 2), inst(2, '都阳镇卫生院', 'township', 1), inst(1, '大化县人民医院', 'hospital'), inst(4, '龙山村卫生室', 'clinic', 2), inst(5, '直属村卫生室', 'clinic', 1)]);
    expect(tree.map((n) => n.label)).toEqual(['大化县人民医院']);
    expect(tree[0]!.children.map((n) => n.label)).toEqual(['都阳镇卫生院', '直属村卫生室']);
    expect(tree[0]!.children[0]!.children.map((n) => n.label)).toEqual(['龙山村卫生室', '弄拉村卫生室'].sort((a, b) => a.localeCompare(b, 'zh-CN')));
  });

  it('knows where each kind may hang', () => {
    expect(parentKinds('clinic')).toEqual(['township', 'hospital']);
    expect(parentKinds('township')).toEqual(['hospital']);
  });

  it('shows a station report\'s queue, warning on a failed upload or a queue waiting an hour', () => {
    const now = Date.parse('2026-12-08T02:00:00Z');
    const report = (r: Partial<StationReport>): StationReport => ({ reportedAt: '2026-12-08T01:59:00Z', queue: { bundles: 0, files: 0, bytes: 0 }, ...r });
    expect(stationQueue(undefined, now)).toBeNull();
    expect(stationQueue(report({}), now)).toEqual({ bundles: 0, files: 0, mb: '0.0', warning: null });
    // An empty queue is fine however long ago the last success was.
    expect(stationQueue(report({ lastSuccess: '2026-11-01T00:00:00Z' }), now)?.warning).toBeNull();
    const queued = { bundles: 2, files: 37, bytes: 31_549_999 };
    expect(stationQueue(report({ queue: queued, lastSuccess: '2026-12-08T01:30:00Z' }), now)).toEqual({ bundles: 2, files: 37, mb: '31.5', warning: null });
    expect(stationQueue(report({ queue: queued, lastSuccess: new Date(now - QUEUE_STALE_MS).toISOString() }), now)?.warning).toBe('stale');
    expect(stationQueue(report({ queue: queued }), now)?.warning).toBe('stale');
    expect(stationQueue(report({ lastError: { time: '2026-12-08T01:58:00Z', message: 'dial tcp: i/o timeout' } }), now)?.warning).toBe('error');
  });
});
