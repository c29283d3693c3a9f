import type { DoneStore } from './queue';

/** The most files remembered per user (the oldest are forgotten first). */
const LIMIT = 50_000;

/**
 * localDoneStore remembers in localStorage which files this browser sent (path, size, date),
 * so that a folder picked again after a reload is not sent again. Writes are gathered: a
 * folder of 5,000 files does not rewrite the record 5,000 times.
 */
export function localDoneStore(userKey: string, storage: Storage | undefined = globalThis.localStorage): DoneStore & { flush(): void } {
  const key = `sanping.uploaded.v1.${userKey}`;
  let map = new Map<string, 'stored' | 'duplicate'>();
  try {
    const raw = storage?.getItem(key);
    if (raw) map = new Map(Object.entries(JSON.parse(raw) as Record<string, 'stored' | 'duplicate'>));
  } catch {
    // unreadable: start afresh
  }
  let timer: ReturnType<typeof setTimeout> | null = null;
  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    while (map.size > LIMIT) map.delete(map.keys().next().value!);
    try {
      storage?.setItem(key, JSON.stringify(Object.fromEntries(map)));
    } catch {
      // storage full or disabled: files are then recognised by the server as duplicates
    }
  }
  return {
    get: (fp) => map.get(fp),
    set(fp, outcome) {
      map.delete(fp);
      map.set(fp, outcome);
      timer ??= setTimeout(flush, 1000);
    },
    flush,
  };
}
