import { sniff as defaultSniff, type Kind } from './sniff';
import { retriable, type Reason } from './reasons';

/**
 * Where a file stands:
 * waiting (in line), checking (its first bytes are read), sending, retrying (the link or the
 * server failed; it goes again after a pause), stored, duplicate (the server already had it),
 * earlier (this browser sent it before: not sent again), failed (with a reason).
 */
export type Status = 'waiting' | 'checking' | 'sending' | 'retrying' | 'stored' | 'duplicate' | 'earlier' | 'failed';

export const FINISHED: ReadonlySet<Status> = new Set(['stored', 'duplicate', 'earlier', 'failed']);

/** Counts of a tar bundle's members, when the file was one. */
export interface BundleCounts {
  stored: number;
  alreadyStored: number;
  failed: number;
}

export interface QueueItem {
  id: number;
  /** The path within what was picked or dropped ("CT/SE1/IM1"), or the file's name. */
  path: string;
  /** Null for a file a DICOMDIR lists that is not on the disc. */
  file: File | null;
  size: number;
  /** path, size and modification time: the same file picked again after a reload. */
  fingerprint: string;
  status: Status;
  /** Bytes the server has acknowledged or that are under way. */
  sent: number;
  /** Sends tried (a send includes tus-js-client's own quick retries). */
  attempts: number;
  reason: Reason | null;
  studyUID?: string;
  bundle?: BundleCounts;
}

export type SendResult =
  | { outcome: 'stored' | 'duplicate'; studyUID?: string; bundle?: BundleCounts }
  | { outcome: 'failed'; reason: Reason }
  | { outcome: 'aborted' };

/** Transport sends one file (tus.ts in the app, a fake in tests). */
export interface Transport {
  send(item: QueueItem, onProgress: (sent: number) => void, signal: AbortSignal): Promise<SendResult>;
}

/** DoneStore remembers which files this browser has sent, across reloads. */
export interface DoneStore {
  get(fingerprint: string): 'stored' | 'duplicate' | undefined;
  set(fingerprint: string, outcome: 'stored' | 'duplicate'): void;
}

export interface QueueOptions {
  transport: Transport;
  /** Files sent at once (default 4): enough to keep a 4G uplink busy through round trips. */
  concurrency?: number;
  /** Sends tried for a file whose failure may pass (network, busy server) before it is failed. */
  maxAttempts?: number;
  /** Pause before the n-th retry (ms). */
  backoff?: (attempt: number) => number;
  sniff?: (f: Blob) => Promise<Kind>;
  done?: DoneStore;
  /** The server's largest upload (Tus-Max-Size); larger files fail before a byte is sent. */
  maxSize?: number;
  /** Called after every change (the store throttles it for the screen). */
  onChange?: () => void;
}

export interface Picked {
  file: File;
  path: string;
}

export interface Stats {
  total: number;
  counts: Record<Status, number>;
  /** Bytes of the files that are or will be sent (failed ones left out). */
  bytesTotal: number;
  bytesSent: number;
  /** Every file has an outcome. */
  finished: boolean;
}

export function fingerprintOf(path: string, f: File): string {
  return `${path}|${f.size}|${f.lastModified}`;
}

const defaultBackoff = (n: number) => Math.min(60_000, 2_000 * 2 ** (n - 1));

/**
 * UploadQueue sends files a few at a time: each is checked (empty, too large, not DICOM) in
 * the browser, then sent; a failure that may pass (the link, the server) is tried again after
 * a pause, up to maxAttempts; a file the server already had is a duplicate, and one this
 * browser sent before is not sent again. It knows nothing of Vue: the store renders it.
 */
export class UploadQueue {
  readonly items: QueueItem[] = [];
  private readonly byFingerprint = new Map<string, QueueItem>();
  private readonly line: QueueItem[] = [];
  private lineHead = 0;
  /** Files stopped part-way (pause, session ended): they go first, in their order, on resume. */
  private readonly front: QueueItem[] = [];
  private readonly active = new Map<number, AbortController>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private nextId = 1;
  private paused = false;
  /** Why the queue stopped by itself (the session ended), or null. */
  blocked: Reason | null = null;
  readonly opts: Required<Omit<QueueOptions, 'done' | 'maxSize' | 'onChange'>> & Pick<QueueOptions, 'done' | 'maxSize' | 'onChange'>;

  constructor(opts: QueueOptions) {
    this.opts = { concurrency: 4, maxAttempts: 5, backoff: defaultBackoff, sniff: defaultSniff, ...opts };
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get activeCount(): number {
    return this.active.size;
  }

  setMaxSize(n: number | undefined): void {
    this.opts.maxSize = n;
  }

  /** add puts files in line (a file already in the list is not added twice) and starts them. */
  add(picked: Picked[]): number {
    let added = 0;
    for (const p of picked) {
      const fp = fingerprintOf(p.path, p.file);
      if (this.byFingerprint.has(fp)) continue;
      const item: QueueItem = { id: this.nextId++, path: p.path, file: p.file, size: p.file.size, fingerprint: fp, status: 'waiting', sent: 0, attempts: 0, reason: null };
      this.items.push(item);
      this.byFingerprint.set(fp, item);
      this.line.push(item);
      added++;
    }
    if (added) this.pump();
    return added;
  }

  /** addFailed lists a file that cannot be sent at all (a DICOMDIR names it; it is not there). */
  addFailed(path: string, reason: Reason): void {
    const fp = `missing|${path}`;
    if (this.byFingerprint.has(fp)) return;
    const item: QueueItem = { id: this.nextId++, path, file: null, size: 0, fingerprint: fp, status: 'failed', sent: 0, attempts: 0, reason };
    this.items.push(item);
    this.byFingerprint.set(fp, item);
    this.changed();
  }

  stats(): Stats {
    const counts: Record<Status, number> = { waiting: 0, checking: 0, sending: 0, retrying: 0, stored: 0, duplicate: 0, earlier: 0, failed: 0 };
    let bytesTotal = 0;
    let bytesSent = 0;
    for (const it of this.items) {
      counts[it.status]++;
      if (it.status === 'failed') continue;
      bytesTotal += it.size;
      bytesSent += it.status === 'stored' || it.status === 'duplicate' || it.status === 'earlier' ? it.size : it.sent;
    }
    const finished = this.items.length > 0 && counts.waiting + counts.checking + counts.sending + counts.retrying === 0;
    return { total: this.items.length, counts, bytesTotal, bytesSent, finished };
  }

  /** pause stops sending: files under way stop where they are and resume from there later. */
  pause(): void {
    this.paused = true;
    for (const ctl of this.active.values()) ctl.abort();
    this.changed();
  }

  resume(): void {
    this.paused = false;
    this.blocked = null;
    this.pump();
    this.changed();
  }

  /** retryFailed puts every failed file that may go through now back in line. */
  retryFailed(): number {
    let n = 0;
    for (const it of this.items) {
      if (it.status === 'failed' && it.file && it.reason && retriable(it.reason)) {
        it.status = 'waiting';
        it.attempts = 0;
        it.reason = null;
        this.line.push(it);
        n++;
      }
    }
    this.pump();
    this.changed();
    return n;
  }

  /** clearFinished drops the files that have an outcome from the list (not from the server). */
  clearFinished(): void {
    const keep = this.items.filter((it) => !FINISHED.has(it.status));
    this.items.length = 0;
    this.items.push(...keep);
    this.byFingerprint.clear();
    for (const it of keep) this.byFingerprint.set(it.fingerprint, it);
    this.changed();
  }

  /** stop ends everything under way (sign-out); what the server has stays there. */
  stop(): void {
    this.paused = true;
    for (const ctl of this.active.values()) ctl.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private changed(): void {
    this.opts.onChange?.();
  }

  private take(): QueueItem | undefined {
    if (this.front.length) {
      this.front.sort((a, b) => a.id - b.id);
      while (this.front.length) {
        const it = this.front.shift()!;
        if (it.status === 'waiting') return it;
      }
    }
    while (this.lineHead < this.line.length) {
      const it = this.line[this.lineHead++]!;
      if (this.lineHead > 1024 && this.lineHead * 2 > this.line.length) {
        this.line.splice(0, this.lineHead);
        this.lineHead = 0;
      }
      if (it.status === 'waiting') return it;
    }
    return undefined;
  }

  private pump(): void {
    while (!this.paused && this.active.size < this.opts.concurrency) {
      const it = this.take();
      if (!it) break;
      const ctl = new AbortController();
      this.active.set(it.id, ctl);
      void this.run(it, ctl.signal).finally(() => {
        this.active.delete(it.id);
        this.pump();
        this.changed();
      });
    }
  }

  private fail(it: QueueItem, reason: Reason): void {
    it.status = 'failed';
    it.reason = reason;
    it.sent = 0;
  }

  private async run(it: QueueItem, signal: AbortSignal): Promise<void> {
    const file = it.file!;
    if (it.attempts === 0) {
      it.status = 'checking';
      this.changed();
      const earlier = this.opts.done?.get(it.fingerprint);
      if (earlier) {
        it.status = 'earlier';
        return;
      }
      if (it.size === 0) return this.fail(it, { key: 'upload.reason.empty' });
      const max = this.opts.maxSize;
      if (max && it.size > max) return this.fail(it, { key: 'upload.reason.tooLargeLocal', params: { max: formatBytes(max) } });
      let kind: Kind;
      try {
        kind = await this.opts.sniff(file);
      } catch {
        return this.fail(it, { key: 'upload.reason.unreadable' });
      }
      if (kind === 'empty') return this.fail(it, { key: 'upload.reason.empty' });
      if (kind === 'other') return this.fail(it, { key: 'upload.reason.notDicom' });
      if (signal.aborted) {
        it.status = 'waiting';
        this.front.push(it);
        return;
      }
    }
    it.status = 'sending';
    it.attempts++;
    this.changed();
    let res: SendResult;
    try {
      res = await this.opts.transport.send(it, (sent) => {
        it.sent = sent;
        this.changed();
      }, signal);
    } catch {
      res = { outcome: 'failed', reason: { key: 'upload.reason.network' } };
    }
    switch (res.outcome) {
      case 'stored':
      case 'duplicate':
        it.status = res.outcome;
        it.sent = it.size;
        it.reason = null;
        it.studyUID = res.studyUID;
        it.bundle = res.bundle;
        this.opts.done?.set(it.fingerprint, res.outcome);
        return;
      case 'aborted':
        it.status = 'waiting';
        it.attempts = Math.max(0, it.attempts - 1);
        this.front.push(it); // first in line when sending resumes
        return;
      case 'failed':
        if (res.reason.key === 'upload.reason.session' || res.reason.key === 'upload.reason.stalePage') {
          // Nothing goes through until the user signs in again; keep the file's place.
          it.status = 'waiting';
          it.attempts = Math.max(0, it.attempts - 1);
          it.reason = res.reason;
          this.front.push(it);
          this.blocked = res.reason;
          this.pause();
          return;
        }
        if (retriable(res.reason) && it.attempts < this.opts.maxAttempts) {
          it.status = 'retrying';
          it.reason = res.reason;
          const t = setTimeout(() => {
            this.timers.delete(t);
            if (it.status !== 'retrying') return;
            it.status = 'waiting';
            this.line.push(it);
            this.pump();
            this.changed();
          }, this.opts.backoff(it.attempts));
          this.timers.add(t);
          return;
        }
        this.fail(it, res.reason);
        return;
    }
  }
}

/** formatBytes: "1.5 MB", "2.0 GB" (powers of 1024, as file managers show them). */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
