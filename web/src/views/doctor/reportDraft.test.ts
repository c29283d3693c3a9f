import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { ApiError, NETWORK_ERROR } from '@/api/errors';
import { useReportDraft, type DraftFields } from './reportDraft';

const empty: DraftFields = { findings: '', impression: '', recommendations: '' };
const problem = (status: number) => new ApiError({ type: 'about:blank', title: 'x', status, detail: '' });

describe('useReportDraft', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('saves once after the typing stops, then says when', async () => {
    const save = vi.fn(async (f: DraftFields) => ({ draftedAt: '2026-03-14T02:05:00Z', f }));
    const d = useReportDraft(save, empty, { delay: 1000 });
    d.change({ findings: '右' });
    d.change({ findings: '右下' });
    await vi.advanceTimersByTimeAsync(900);
    d.change({ findings: '右下肺' });
    expect(d.status.value).toBe('dirty');
    expect(d.unsaved.value).toBe(true);
    await vi.advanceTimersByTimeAsync(999);
    expect(save).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(save).toHaveBeenCalledTimes(1);
    expect(save.mock.calls[0]?.[0].findings).toBe('右下肺');
    expect(d.status.value).toBe('saved');
    expect(d.unsaved.value).toBe(false);
    expect(d.savedAt.value?.toISOString()).toBe('2026-03-14T02:05:00.000Z');
  });

  it('does not save text that is back to what is stored', async () => {
    const save = vi.fn(async () => ({ draftedAt: '2026-03-14T02:05:00Z' }));
    const d = useReportDraft(save, { ...empty, impression: '良性' }, { delay: 500 });
    d.change({ impression: '良性可能' });
    d.change({ impression: '良性' });
    await vi.advanceTimersByTimeAsync(2000);
    expect(save).not.toHaveBeenCalled();
    expect(d.unsaved.value).toBe(false);
  });

  it('saves what was typed during a save right after it', async () => {
    let resolve: () => void = () => undefined;
    const save = vi.fn(
      (f: DraftFields) =>
        new Promise<{ draftedAt: string }>((r) => {
          resolve = () => r({ draftedAt: f.findings ? '2026-03-14T02:05:00Z' : '' });
        }),
    );
    const d = useReportDraft(save, empty, { delay: 100 });
    d.change({ findings: 'a' });
    await vi.advanceTimersByTimeAsync(100);
    expect(d.status.value).toBe('saving');
    d.change({ findings: 'ab' });
    resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(d.unsaved.value).toBe(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(save).toHaveBeenCalledTimes(2);
    expect(save.mock.calls[1]?.[0].findings).toBe('ab');
    resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(d.status.value).toBe('saved');
  });

  it('retries with backoff on a network or server failure and keeps the text', async () => {
    const save = vi
      .fn()
      .mockRejectedValueOnce(problem(NETWORK_ERROR))
      .mockRejectedValueOnce(problem(503))
      .mockResolvedValue({ draftedAt: '2026-03-14T02:06:00Z' });
    const d = useReportDraft(save, empty, { delay: 100, retryDelay: 1000 });
    d.change({ impression: '考虑炎症' });
    await vi.advanceTimersByTimeAsync(100);
    expect(d.status.value).toBe('retrying');
    expect(d.unsaved.value).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(save).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1999);
    expect(save).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(save).toHaveBeenCalledTimes(3);
    expect(d.status.value).toBe('saved');
  });

  it('stops on a conflict (signed meanwhile) and on a refusal', async () => {
    const save = vi.fn().mockRejectedValue(problem(409));
    const d = useReportDraft(save, empty, { delay: 100, retryDelay: 100 });
    d.change({ findings: 'x' });
    await vi.advanceTimersByTimeAsync(100);
    expect(d.status.value).toBe('conflict');
    d.change({ findings: 'xy' });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(save).toHaveBeenCalledTimes(1);
    expect(d.unsaved.value).toBe(true);

    const refuse = vi.fn().mockRejectedValue(problem(403));
    const e = useReportDraft(refuse, empty, { delay: 100, retryDelay: 100 });
    e.change({ findings: 'x' });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(e.status.value).toBe('failed');
    expect(refuse).toHaveBeenCalledTimes(1);
  });

  it('flush saves at once and says whether all is stored', async () => {
    const save = vi.fn(async () => ({ draftedAt: '2026-03-14T02:05:00Z' }));
    const d = useReportDraft(save, empty, { delay: 60_000 });
    d.change({ recommendations: '三个月后复查' });
    expect(await d.flush()).toBe(true);
    expect(save).toHaveBeenCalledTimes(1);
    expect(await d.flush()).toBe(true);
    expect(save).toHaveBeenCalledTimes(1);
    const failing = useReportDraft(vi.fn().mockRejectedValue(problem(500)), empty, { delay: 60_000, retryDelay: 60_000 });
    failing.change({ findings: 'x' });
    expect(await failing.flush()).toBe(false);
    failing.dispose();
  });
});

describe('picker times are China time', async () => {
  const { chinaISOFromPicker, pickerFromISO } = await import('./format');
  it('keeps the wall clock whatever the device zone', () => {
    const d = new Date(2026, 11, 1, 10, 30);
    expect(chinaISOFromPicker(d)).toBe('2026-12-01T10:30:00+08:00');
    const back = pickerFromISO('2026-12-01T02:30:00Z');
    expect([back.getFullYear(), back.getMonth(), back.getDate(), back.getHours(), back.getMinutes()]).toEqual([2026, 11, 1, 10, 30]);
  });
});
