import { discKey, parseDicomdir, DicomdirError } from './dicomdir';
import type { Picked } from './queue';
import { readHead } from './sniff';

/** Yield to the browser between batches, so that a folder of thousands keeps the page alive. */
export const nextTick = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * entriesOfDrop takes the dropped entries now: a DataTransfer is only readable during the
 * drop event itself, its directory entries later.
 */
export function entriesOfDrop(dt: DataTransfer): { entries: FileSystemEntry[]; files: File[] } {
  const entries: FileSystemEntry[] = [];
  for (const item of Array.from(dt.items ?? [])) {
    if (item.kind !== 'file') continue;
    const e = typeof item.webkitGetAsEntry === 'function' ? item.webkitGetAsEntry() : null;
    if (e) entries.push(e);
  }
  // No entry API (or nothing from it): the plain files, without folders.
  return { entries, files: entries.length ? [] : Array.from(dt.files ?? []) };
}

function readBatch(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function fileOf(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/**
 * walkEntries lists the files under dropped entries, folders included (readEntries answers in
 * batches of about 100: it is called until it answers none). onProgress gets the count found.
 */
export async function walkEntries(entries: FileSystemEntry[], onProgress?: (found: number) => void): Promise<{ picked: Picked[]; unreadable: string[] }> {
  const picked: Picked[] = [];
  const unreadable: string[] = [];
  const stack = [...entries];
  let n = 0;
  while (stack.length) {
    const e = stack.pop()!;
    const path = e.fullPath.replace(/^\/+/, '') || e.name;
    if (e.isDirectory) {
      const reader = (e as FileSystemDirectoryEntry).createReader();
      try {
        for (;;) {
          const batch = await readBatch(reader);
          if (!batch.length) break;
          stack.push(...batch);
        }
      } catch {
        unreadable.push(path);
      }
    } else if (e.isFile) {
      try {
        picked.push({ file: await fileOf(e as FileSystemFileEntry), path });
      } catch {
        unreadable.push(path);
      }
      if (++n % 200 === 0) {
        onProgress?.(n);
        await nextTick();
      }
    }
  }
  picked.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { picked, unreadable };
}

/** pickedOfInput: files from <input type=file> (webkitdirectory gives each its path). */
export function pickedOfInput(list: FileList | File[]): Picked[] {
  return Array.from(list, (file) => ({ file, path: file.webkitRelativePath || file.name }));
}

export interface Plan {
  /** What to send. */
  send: Picked[];
  /** Files a DICOMDIR lists that are not there (path as the DICOMDIR names them). */
  missing: string[];
  /** DICOMDIR files read, and the files they list. */
  dicomdirs: { path: string; listed: number }[];
  /** DICOMDIR files that could not be read (their folders are sent whole). */
  badDicomdirs: string[];
  /** Files in a disc's folders that its DICOMDIR does not list (viewer programs and the like): not sent. */
  unlisted: number;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * plan decides what of a drop or pick is sent. Where a folder holds a DICOMDIR (a CD or DVD
 * from a modality), the files it lists are sent, those it lists but are missing are reported,
 * and the disc's other files (viewer programs, autorun) are left out. Everything else is sent
 * as it is, to be checked file by file.
 */
export async function plan(picked: Picked[], readBytes: (f: File) => Promise<ArrayBuffer | Uint8Array> = (f) => readHead(f, f.size)): Promise<Plan> {
  const out: Plan = { send: [], missing: [], dicomdirs: [], badDicomdirs: [], unlisted: 0 };
  const dirs = picked.filter((p) => baseOf(p.path).toUpperCase() === 'DICOMDIR');
  if (!dirs.length) {
    out.send = picked;
    return out;
  }
  const byKey = new Map<string, Picked>();
  for (const p of picked) byKey.set(discKey(p.path), p);
  const listedKeys = new Set<string>();
  const discRoots: string[] = [];
  for (const d of dirs) {
    let entries;
    try {
      entries = parseDicomdir(await readBytes(d.file));
    } catch (err) {
      if (!(err instanceof DicomdirError) && !(err instanceof RangeError)) throw err;
      out.badDicomdirs.push(d.path);
      continue;
    }
    const root = dirOf(d.path);
    discRoots.push(discKey(root));
    listedKeys.add(discKey(d.path));
    let listed = 0;
    for (const e of entries) {
      const full = root ? `${root}/${e.path}` : e.path;
      const k = discKey(full);
      if (listedKeys.has(k)) continue;
      listedKeys.add(k);
      listed++;
      const p = byKey.get(k);
      if (p) out.send.push(p);
      else out.missing.push(full);
    }
    out.dicomdirs.push({ path: d.path, listed });
  }
  const onDisc = (k: string) => discRoots.some((r) => r === '' || k.startsWith(r + '/'));
  for (const p of picked) {
    const k = discKey(p.path);
    if (listedKeys.has(k)) continue;
    if (onDisc(k)) out.unlisted++;
    else out.send.push(p);
  }
  return out;
}
