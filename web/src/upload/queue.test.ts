import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { UploadQueue, formatBytes, type QueueItem, type SendResult, type Transport, type DoneStore } from './queue';
import type { Kind } from './sniff';

function file(name: string, size = 10, lastModified = 1): File {
  return new File([new Uint8Array(size)], name, { lastModified });
}

/** A transport the test answers by hand, one file at a time. */
class FakeTransport implements Transport {
  calls: { item: QueueItem; resolve: (r: SendResult) => void; progress: (n: number) => void; signal: AbortSignal }[] = [];
  maxActive = 0;
  active = 0;
  send(item: QueueItem, progress: (n: number) => void, signal: AbortSignal): Promise<SendResult> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise((resolve) => {
      const done = (r: SendResult) => {
        this.active--;
        resolve(r);
      };
      const call = { item, resolve: done, progress, signal };
      signal.addEventListener('abort', () => {
        this.calls = this.calls.filter((c) => c !== call);
        done({ outcome: 'aborted' });
      });
      this.calls.push(call);
    });
  }
  answer(path: string, r: SendResult): void {
    const i = this.calls.findIndex((c) => c.item.path === path);
    if (i < 0) throw new Error(`no send of ${path}`);
    this.calls.splice(i, 1)[0]!.resolve(r);
  }
}

const sniffAll = (k: Kind) => () => Promise.resolve(k);
const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

function memoryDone(): DoneStore & { map: Map<string, 'stored' | 'duplicate'> } {
  const map = new Map<string, 'stored' | 'duplicate'>();
  return { map, get: (fp) => map.get(fp), set: (fp, o) => void map.set(fp, o) };
}

describe('UploadQueue', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sends at most `concurrency` files at once and takes the next as one finishes', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, concurrency: 3, sniff: sniffAll('dicom') });
    q.add(Array.from({ length: 10 }, (_, i) => ({ file: file(`f${i}`), path: `f${i}` })));
    await flush();
    expect(tr.calls).toHaveLength(3);
    tr.answer('f0', { outcome: 'stored' });
    await flush();
    expect(tr.calls).toHaveLength(3);
    expect(tr.calls.map((c) => c.item.path)).toEqual(['f1', 'f2', 'f3']);
    for (let i = 1; i < 10; i++) {
      await flush();
      tr.answer(`f${i}`, { outcome: i % 2 ? 'stored' : 'duplicate' });
    }
    await flush();
    expect(tr.maxActive).toBe(3);
    const s = q.stats();
    expect(s.finished).toBe(true);
    expect(s.counts.stored).toBe(6);
    expect(s.counts.duplicate).toBe(4);
    expect(s.bytesSent).toBe(s.bytesTotal);
  });

  it('checks files in the browser first: empty, not DICOM, too large, unreadable', async () => {
    const tr = new FakeTransport();
    const sniff = vi.fn(async (b: Blob): Promise<Kind> => {
      const name = (b as File).name;
      if (name === 'broken') throw new Error('gone');
      return name.endsWith('.txt') ? 'other' : 'dicom';
    });
    const q = new UploadQueue({ transport: tr, sniff, maxSize: 100 });
    q.add([
      { file: file('empty', 0), path: 'empty' },
      { file: file('notes.txt'), path: 'notes.txt' },
      { file: file('huge', 101), path: 'huge' },
      { file: file('broken'), path: 'broken' },
      { file: file('ok'), path: 'ok' },
    ]);
    await flush();
    const by = Object.fromEntries(q.items.map((it) => [it.path, it]));
    expect(by.empty!.reason?.key).toBe('upload.reason.empty');
    expect(by['notes.txt']!.reason?.key).toBe('upload.reason.notDicom');
    expect(by.huge!.reason).toEqual({ key: 'upload.reason.tooLargeLocal', params: { max: '100 B' } });
    expect(by.broken!.reason?.key).toBe('upload.reason.unreadable');
    expect(tr.calls.map((c) => c.item.path)).toEqual(['ok']);
    // Failed files count for nothing in the bytes to send.
    expect(q.stats().bytesTotal).toBe(10);
  });

  it('tries a file again after a network failure, with a pause, up to maxAttempts', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, sniff: sniffAll('dicom'), maxAttempts: 3, backoff: (n) => n * 1000 });
    q.add([{ file: file('a'), path: 'a' }]);
    await flush();
    tr.answer('a', { outcome: 'failed', reason: { key: 'upload.reason.network' } });
    await flush();
    expect(q.items[0]!.status).toBe('retrying');
    expect(tr.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(999);
    expect(tr.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    await flush();
    expect(tr.calls).toHaveLength(1);
    tr.answer('a', { outcome: 'failed', reason: { key: 'upload.reason.server' } });
    await vi.advanceTimersByTimeAsync(2000);
    await flush();
    tr.answer('a', { outcome: 'failed', reason: { key: 'upload.reason.network' } });
    await flush();
    expect(q.items[0]!.status).toBe('failed');
    expect(q.items[0]!.attempts).toBe(3);
    // The user can put it back in line.
    expect(q.retryFailed()).toBe(1);
    await flush();
    tr.answer('a', { outcome: 'stored', studyUID: '1.2' });
    await flush();
    expect(q.items[0]!).toMatchObject({ status: 'stored', studyUID: '1.2', reason: null });
  });

  it('does not retry a refusal', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, sniff: sniffAll('dicom') });
    q.add([{ file: file('a'), path: 'a' }]);
    await flush();
    tr.answer('a', { outcome: 'failed', reason: { key: 'upload.reason.uidInUse' } });
    await flush();
    expect(q.items[0]!.status).toBe('failed');
    expect(q.retryFailed()).toBe(0);
  });

  it('remembers sent files and skips them when picked again (after a reload)', async () => {
    const done = memoryDone();
    const tr = new FakeTransport();
    const q1 = new UploadQueue({ transport: tr, sniff: sniffAll('dicom'), done });
    const picked = [{ file: file('a', 10, 5), path: 'CT/a' }, { file: file('b', 10, 5), path: 'CT/b' }];
    q1.add(picked);
    await flush();
    tr.answer('CT/a', { outcome: 'stored' });
    await flush();
    expect(done.map.get('CT/a|10|5')).toBe('stored');
    // The page reloads: a new queue, the same folder picked again.
    const tr2 = new FakeTransport();
    const q2 = new UploadQueue({ transport: tr2, sniff: sniffAll('dicom'), done });
    q2.add([{ file: file('a', 10, 5), path: 'CT/a' }, { file: file('b', 10, 5), path: 'CT/b' }]);
    await flush();
    expect(q2.items.map((it) => it.status)).toEqual(['earlier', 'sending']);
    expect(tr2.calls.map((c) => c.item.path)).toEqual(['CT/b']);
    // The same file with another date is another file.
    q2.add([{ file: file('a', 10, 6), path: 'CT/a' }]);
    await flush();
    expect(tr2.calls.map((c) => c.item.path)).toEqual(['CT/b', 'CT/a']);
  });

  it('adds a file already in the list once', () => {
    const q = new UploadQueue({ transport: new FakeTransport(), sniff: sniffAll('dicom'), concurrency: 1 });
    const f = file('a');
    expect(q.add([{ file: f, path: 'a' }, { file: f, path: 'a' }])).toBe(1);
    expect(q.add([{ file: f, path: 'a' }])).toBe(0);
    expect(q.items).toHaveLength(1);
  });

  it('pauses (files under way go back first in line) and resumes', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, sniff: sniffAll('dicom'), concurrency: 2 });
    q.add(['a', 'b', 'c'].map((p) => ({ file: file(p), path: p })));
    await flush();
    tr.calls[0]!.progress(4);
    expect(q.stats().bytesSent).toBe(4);
    q.pause();
    await flush();
    expect(q.items.map((it) => it.status)).toEqual(['waiting', 'waiting', 'waiting']);
    expect(q.activeCount).toBe(0);
    q.resume();
    await flush();
    expect(tr.calls.map((c) => c.item.path)).toEqual(['a', 'b']);
    expect(q.items[0]!.attempts).toBe(1);
  });

  it('stops everything when the session ends, keeping the file, until resumed', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, sniff: sniffAll('dicom'), concurrency: 2 });
    q.add(['a', 'b', 'c'].map((p) => ({ file: file(p), path: p })));
    await flush();
    tr.answer('a', { outcome: 'failed', reason: { key: 'upload.reason.session' } });
    await flush();
    expect(q.isPaused).toBe(true);
    expect(q.blocked?.key).toBe('upload.reason.session');
    expect(q.items.every((it) => it.status === 'waiting')).toBe(true);
    q.resume();
    await flush();
    expect(q.blocked).toBeNull();
    expect(tr.calls.map((c) => c.item.path).sort()).toEqual(['a', 'b']);
  });

  it('lists files a disc index names that are missing as failed, without sending them', () => {
    const q = new UploadQueue({ transport: new FakeTransport() });
    q.addFailed('DICOM/IM9', { key: 'upload.reason.missingOnDisc' });
    q.addFailed('DICOM/IM9', { key: 'upload.reason.missingOnDisc' });
    expect(q.items).toHaveLength(1);
    expect(q.stats()).toMatchObject({ total: 1, finished: true, bytesTotal: 0 });
  });

  it('keeps 5,000 files without slowing down', async () => {
    const tr = new FakeTransport();
    const q = new UploadQueue({ transport: tr, sniff: sniffAll('dicom'), concurrency: 4 });
    const t0 = performance.now();
    q.add(Array.from({ length: 5000 }, (_, i) => ({ file: file(`f${i}`), path: `dir/f${i}` })));
    for (let i = 0; i < 5000; i++) {
      await flush();
      tr.calls.shift()!.resolve({ outcome: 'stored' });
    }
    await flush();
    expect(q.stats().counts.stored).toBe(5000);
    expect(performance.now() - t0).toBeLessThan(20_000);
  });

  it('formats sizes as file managers do', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(2 * 1024 ** 3)).toBe('2.0 GB');
  });
});
