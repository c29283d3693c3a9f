/** What the first bytes of a file say it is. */
export type Kind = 'dicom' | 'tar' | 'empty' | 'other';

/** readHead reads the first n bytes of a file (never the whole file: a 2 GB file stays on disk). */
export async function readHead(blob: Blob, n: number): Promise<Uint8Array> {
  const part = blob.slice(0, n);
  if (typeof part.arrayBuffer === 'function') return new Uint8Array(await part.arrayBuffer());
  // jsdom's Blob and old browsers: FileReader.
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(new Uint8Array(r.result as ArrayBuffer));
    r.onerror = () => reject(r.error ?? new Error('read failed'));
    r.readAsArrayBuffer(part);
  });
}

function ascii(b: Uint8Array, at: number, len: number): string {
  let s = '';
  for (let i = at; i < at + len && i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/**
 * kindOfHead tells a DICOM Part 10 file ("DICM" at offset 128, PS3.10 7.1) and a tar bundle
 * ("ustar" at offset 257) from anything else: the same test the server makes.
 */
export function kindOfHead(head: Uint8Array, size: number): Kind {
  if (size === 0) return 'empty';
  if (head.length >= 132 && ascii(head, 128, 4) === 'DICM') return 'dicom';
  if (head.length >= 262 && ascii(head, 257, 5) === 'ustar') return 'tar';
  return 'other';
}

/** sniff reads a file's first 512 bytes and says what it is. */
export async function sniff(blob: Blob): Promise<Kind> {
  if (blob.size === 0) return 'empty';
  return kindOfHead(await readHead(blob, 512), blob.size);
}
