import { describe, expect, it } from 'vitest';
import type { Institution, User } from './admin';
import { chinaMidnight, daySeries, doctorRows, humanBytes, humanDuration, institutionRows, monthSeries, since } from './dashboard';

const inst = (id: number, name: string): Institution => ({ id, name, kind: 'hospital', code: `c${id}`, createdAt: '2026-12-01T00:00:00Z' });

describe('dashboard series', () => {
  it('starts each day at China midnight', () => {
    expect(chinaMidnight('2026-12-08')).toBe(Date.parse('2026-12-07T16:00:00Z') / 1000);
  });

  it('fills missing days with 0, oldest first', () => {
    const [xs, ys] = daySeries([{ day: '2026-12-03', count: 2 }, { day: '2026-12-01', count: 1 }]);
    expect(xs).toEqual([chinaMidnight('2026-12-01'), chinaMidnight('2026-12-02'), chinaMidnight('2026-12-03')]);
    expect(ys).toEqual([1, 0, 2]);
    expect(daySeries([])).toEqual([[], []]);
  });

  it('orders months', () => {
    expect(monthSeries([{ month: '2026-12', bytes: 5 }, { month: '2026-11', bytes: 3 }])).toEqual([[chinaMidnight('2026-11-01'), chinaMidnight('2026-12-01')], [3, 5]]);
  });

  it('names institutions and doctors, busiest first', () => {
    const insts = [inst(1, '大化县人民医院'), inst(2, '都阳镇卫生院')];
    expect(institutionRows([{ institutionId: 2, requested: 1, received: 0 }, { institutionId: 1, requested: 0, received: 4 }, { institutionId: 9, requested: 2, received: 0 }], insts).map((r) => r.name))
      .toEqual(['大化县人民医院', '#9', '都阳镇卫生院']);
    const users = [{ id: 5, username: 'wei.dongping', displayName: '韦东平', institutionId: 1 }, { id: 6, username: 'luo', displayName: '', institutionId: 0 }] as User[];
    expect(doctorRows([{ doctorId: 6, count: 1 }, { doctorId: 5, count: 3 }], users, insts)).toEqual([
      { id: 5, name: '韦东平', institution: '大化县人民医院', count: 3 },
      { id: 6, name: 'luo', institution: '', count: 1 },
    ]);
  });
});

describe('human numbers', () => {
  it('writes durations as their two largest units', () => {
    expect(humanDuration(0, 'zh-CN')).toBe('—');
    expect(humanDuration(42, 'zh-CN')).toBe('42 秒');
    expect(humanDuration(3600, 'zh-CN')).toBe('1 小时');
    expect(humanDuration(2 * 3600 + 5 * 60 + 9, 'zh-CN')).toBe('2 小时 5 分钟');
    expect(humanDuration(86_400 + 59, 'en')).toBe('1 d');
    expect(humanDuration(3 * 86_400 + 4 * 3600, 'en')).toBe('3 d 4 h');
    expect(humanDuration(0.3, 'en')).toBe('1 s');
  });

  it('writes sizes in binary units with three digits', () => {
    expect(humanBytes(0, 'en')).toBe('0 B');
    expect(humanBytes(1536, 'en')).toBe('1.50 KB');
    expect(humanBytes(820 * 1024 ** 2, 'zh-CN')).toBe('820 MB');
    expect(humanBytes(1.5 * 1024 ** 4, 'en')).toBe('1.50 TB');
    expect(humanBytes(12.34 * 1024 ** 3, 'en')).toBe('12.3 GB');
  });

  it('says how long ago', () => {
    expect(since('2026-12-06T02:00:00Z', new Date('2026-12-08T03:00:00Z'), 'zh-CN')).toBe('2 天 1 小时');
    expect(since(undefined, new Date(), 'en')).toBe('');
  });
});
