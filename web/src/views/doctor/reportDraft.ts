import { computed, ref, type Ref } from 'vue';
import { ApiError, NETWORK_ERROR } from '@/api/errors';

export interface DraftFields {
  findings: string;
  impression: string;
  recommendations: string;
}

/** What saving a draft answers: the server's time of the save. */
export type SaveDraft = (fields: DraftFields) => Promise<{ draftedAt: string }>;

/**
 * idle: nothing typed since loading; dirty: changes wait for the debounce; saving; saved;
 * retrying: the last save failed on the network or the server and is tried again; conflict:
 * the server refuses drafts now (signed meanwhile, the consultation moved): not retried;
 * failed: refused for another reason (forbidden, invalid): not retried until the next change.
 */
export type DraftStatus = 'idle' | 'dirty' | 'saving' | 'saved' | 'retrying' | 'conflict' | 'failed';

export interface DraftOptions {
  /** Quiet time after the last keystroke before saving (ms). */
  delay?: number;
  /** First wait before retrying a failed save (ms); doubles up to maxRetryDelay. */
  retryDelay?: number;
  maxRetryDelay?: number;
}

/**
 * useReportDraft autosaves a report draft: debounced after typing, one save at a time (a
 * change made while saving is saved right after), retried with backoff when the link or the
 * server fails, stopped on a conflict. `unsaved` says whether leaving would lose text; flush
 * saves at once (before signing, on leaving).
 */
export function useReportDraft(save: SaveDraft, initial: DraftFields, opts: DraftOptions = {}) {
  const delay = opts.delay ?? 1200;
  const retryBase = opts.retryDelay ?? 2000;
  const retryMax = opts.maxRetryDelay ?? 30000;

  const fields = ref<DraftFields>({ ...initial }) as Ref<DraftFields>;
  const status = ref<DraftStatus>('idle');
  const savedAt = ref<Date | null>(null);
  const error = ref<unknown>(null);
  /** The text last stored on the server. */
  const storedText = ref(JSON.stringify(initial));
  let timer: ReturnType<typeof setTimeout> | null = null;
  let inFlight: Promise<void> | null = null;
  let retry = retryBase;

  const unsaved = computed(() => JSON.stringify(fields.value) !== storedText.value);

  function clearTimer(): void {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  /** change takes the editor's fields and (re)starts the debounce. */
  function change(next: Partial<DraftFields>): void {
    fields.value = { ...fields.value, ...next };
    if (status.value === 'conflict') return;
    if (!unsaved.value) {
      clearTimer();
      if (status.value === 'dirty') status.value = savedAt.value ? 'saved' : 'idle';
      return;
    }
    if (status.value !== 'saving') status.value = 'dirty';
    retry = retryBase;
    clearTimer();
    timer = setTimeout(() => void saveNow(), delay);
  }

  async function saveNow(): Promise<void> {
    clearTimer();
    if (inFlight) {
      await inFlight;
      if (unsaved.value && status.value !== 'conflict' && status.value !== 'failed') return saveNow();
      return;
    }
    if (!unsaved.value || status.value === 'conflict') return;
    const snapshot = { ...fields.value };
    status.value = 'saving';
    inFlight = (async () => {
      try {
        const res = await save(snapshot);
        storedText.value = JSON.stringify(snapshot);
        savedAt.value = new Date(res.draftedAt);
        error.value = null;
        retry = retryBase;
        status.value = unsaved.value ? 'dirty' : 'saved';
      } catch (err) {
        error.value = err;
        if (err instanceof ApiError && err.status === 409) {
          status.value = 'conflict';
        } else if (err instanceof ApiError && err.status !== NETWORK_ERROR && err.status < 500 && err.status !== 429) {
          status.value = 'failed';
        } else {
          status.value = 'retrying';
          timer = setTimeout(() => void saveNow(), retry);
          retry = Math.min(retry * 2, retryMax);
        }
      } finally {
        inFlight = null;
      }
    })();
    await inFlight;
    // Typed while saving: save again after the quiet time.
    if ((status.value as DraftStatus) === 'dirty' && unsaved.value && timer === null) timer = setTimeout(() => void saveNow(), delay);
  }

  /** flush saves now whatever the debounce says; resolves true when nothing is left unsaved. */
  async function flush(): Promise<boolean> {
    if (status.value === 'failed' && unsaved.value) status.value = 'dirty';
    await saveNow();
    return !unsaved.value;
  }

  function dispose(): void {
    clearTimer();
  }

  return { fields, status, savedAt, error, unsaved, change, flush, dispose };
}
