import { defineStore } from 'pinia';
import { computed, markRaw, ref, shallowRef } from 'vue';
import { api } from '@/api/client';
import { useAuthStore } from '@/stores/auth';
import { FINISHED, UploadQueue, type Picked, type QueueItem, type Stats, type Status } from './queue';
import { localDoneStore } from './done';
import { maxUploadSize, tusTransport } from './tus';
import { entriesOfDrop, nextTick, pickedOfInput, plan, walkEntries } from './files';

/** Which files the list shows. */
export type Filter = 'all' | 'active' | 'failed' | 'done';

const FILTERS: Record<Filter, (s: Status) => boolean> = {
  all: () => true,
  active: (s) => !FINISHED.has(s),
  failed: (s) => s === 'failed',
  done: (s) => s === 'stored' || s === 'duplicate' || s === 'earlier',
};

/** A line about what was picked as a whole (a disc's DICOMDIR, files left out). */
export interface Notice {
  key: string;
  params?: Record<string, string | number>;
  tone: 'info' | 'warning';
}

/** The screen is redrawn at most this often however fast files progress. */
const REDRAW_MS = 250;
/** Files put in the queue per step, between which the browser draws and handles input. */
const ADD_BATCH = 250;

/**
 * useUploadStore holds the clinic's upload queue for the session: it lives on when the user
 * opens another screen, and the screen reads it through a version that changes at most four
 * times a second (a folder of 5,000 files is not 5,000 reactive objects).
 */
export const useUploadStore = defineStore('upload', () => {
  const version = ref(0);
  const queue = shallowRef<UploadQueue | null>(null);
  const notices = ref<Notice[]>([]);
  /** Files found so far while a drop or pick is read (null: not reading). */
  const reading = ref<number | null>(null);
  let csrf = '';
  let redraw: ReturnType<typeof setTimeout> | null = null;
  let done: ReturnType<typeof localDoneStore> | null = null;
  /** Whose queue this is: another user signing in on this tab gets a new one. */
  let owner = '';

  function userKeyNow(): string {
    const auth = useAuthStore();
    return String(auth.user?.id ?? auth.user?.username ?? 'anonymous');
  }

  /** forCurrentUser drops the queue of a user who signed out on this tab. */
  function forCurrentUser(): void {
    if (queue.value && owner !== userKeyNow()) $reset();
  }

  function bump(): void {
    if (redraw) return;
    redraw = setTimeout(() => {
      redraw = null;
      version.value++;
    }, REDRAW_MS);
  }

  async function refreshCSRF(): Promise<void> {
    try {
      const { data } = await api.GET('/api/session');
      csrf = data?.csrfToken ?? csrf;
    } catch {
      // the upload answers 401/403 then, and the queue stops with that reason
    }
  }

  function ensureQueue(): UploadQueue {
    forCurrentUser();
    if (queue.value) return queue.value;
    const userKey = userKeyNow();
    owner = userKey;
    csrf = '';
    done = localDoneStore(userKey);
    const q = new UploadQueue({
      transport: tusTransport({ csrfToken: () => csrf, userKey }),
      concurrency: 4,
      done,
      onChange: bump,
    });
    queue.value = markRaw(q);
    void maxUploadSize().then((n) => q.setMaxSize(n));
    if (typeof window !== 'undefined') window.addEventListener('pagehide', () => done?.flush());
    return q;
  }

  async function addPicked(picked: Picked[], unreadable: string[] = []): Promise<void> {
    const q = ensureQueue();
    if (!csrf) await refreshCSRF();
    const sorted = [...picked].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const p = await plan(sorted);
    const found: Notice[] = [];
    for (const d of p.dicomdirs) found.push({ key: 'upload.notice.dicomdir', params: { path: d.path, listed: d.listed }, tone: 'info' });
    for (const d of p.badDicomdirs) found.push({ key: 'upload.notice.badDicomdir', params: { path: d }, tone: 'warning' });
    if (p.missing.length) found.push({ key: 'upload.notice.missing', params: { count: p.missing.length }, tone: 'warning' });
    if (p.unlisted) found.push({ key: 'upload.notice.unlisted', params: { count: p.unlisted }, tone: 'info' });
    notices.value = [...notices.value, ...found];
    for (const path of p.missing) q.addFailed(path, { key: 'upload.reason.missingOnDisc' });
    for (const path of unreadable) q.addFailed(path, { key: 'upload.reason.unreadable' });
    for (let i = 0; i < p.send.length; i += ADD_BATCH) {
      q.add(p.send.slice(i, i + ADD_BATCH));
      bump();
      if (i + ADD_BATCH < p.send.length) await nextTick();
    }
    version.value++;
  }

  /** addDrop reads a drop (files and whole folders) and queues it. */
  async function addDrop(dt: DataTransfer): Promise<void> {
    const { entries, files } = entriesOfDrop(dt);
    reading.value = 0;
    try {
      const walked = entries.length ? await walkEntries(entries, (n) => (reading.value = n)) : { picked: pickedOfInput(files), unreadable: [] };
      await addPicked(walked.picked, walked.unreadable);
    } finally {
      reading.value = null;
    }
  }

  async function addFiles(list: FileList | File[]): Promise<void> {
    reading.value = 0;
    try {
      await addPicked(pickedOfInput(list));
    } finally {
      reading.value = null;
    }
  }

  const stats = computed<Stats | null>(() => {
    void version.value;
    return queue.value?.stats() ?? null;
  });

  const paused = computed(() => {
    void version.value;
    return queue.value?.isPaused ?? false;
  });

  const blocked = computed(() => {
    void version.value;
    return queue.value?.blocked ?? null;
  });

  /** page: the files of one page of the list, copied (the list redraws when they change). */
  function page(filter: Filter, index: number, size: number): { rows: QueueItem[]; total: number } {
    void version.value;
    const items = queue.value?.items ?? [];
    const match = filter === 'all' ? items : items.filter((it) => FILTERS[filter](it.status));
    return { rows: match.slice(index * size, (index + 1) * size).map((it) => ({ ...it })), total: match.length };
  }

  async function resume(): Promise<void> {
    await refreshCSRF();
    queue.value?.resume();
  }

  function pause(): void {
    queue.value?.pause();
  }

  async function retryFailed(): Promise<number> {
    await refreshCSRF();
    return queue.value?.retryFailed() ?? 0;
  }

  function clearFinished(): void {
    queue.value?.clearFinished();
    notices.value = [];
    version.value++;
  }

  /** busy: files are being sent or wait their turn (leaving the page would stop them). */
  const busy = computed(() => {
    const s = stats.value;
    return !!s && !s.finished && s.total > 0;
  });

  function $reset(): void {
    queue.value?.stop();
    done?.flush();
    queue.value = null;
    notices.value = [];
    version.value++;
  }

  return { version, notices, reading, stats, paused, blocked, busy, page, addDrop, addFiles, addPicked, resume, pause, retryFailed, clearFinished, forCurrentUser, $reset };
});
