// A DICOMDIR (PS3.10 7.2, PS3.3 F.3) lists the files of a CD or DVD: one Directory Record per
// patient, study, series and image, the image records naming their file by Referenced File ID
// (0004,1500), path components joined by backslashes, relative to the DICOMDIR's folder.
// The file is Explicit VR Little Endian by rule (PS3.10 8.6); the parser reads only what it
// needs and skips every other element, sequences of defined or undefined length included.

/** One file a DICOMDIR lists. */
export interface DicomdirEntry {
  /** Path relative to the DICOMDIR's folder, with '/' separators, as written on the disc. */
  path: string;
  /** Directory Record Type (IMAGE, SR DOCUMENT, ...). */
  recordType: string;
}

export class DicomdirError extends Error {}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;

function tagOf(group: number, element: number): number {
  return ((group << 16) | element) >>> 0;
}
const ITEM = tagOf(0xfffe, 0xe000);
const ITEM_END = tagOf(0xfffe, 0xe00d);
const SEQ_END = tagOf(0xfffe, 0xe0dd);
const RECORD_SEQ = tagOf(0x0004, 0x1220);
const RECORD_TYPE = tagOf(0x0004, 0x1430);
const FILE_ID = tagOf(0x0004, 0x1500);

class Reader {
  pos = 0;
  constructor(readonly v: DataView) {}
  need(n: number): void {
    if (this.pos + n > this.v.byteLength) throw new DicomdirError('DICOMDIR is cut short');
  }
  u16(): number {
    this.need(2);
    const x = this.v.getUint16(this.pos, true);
    this.pos += 2;
    return x;
  }
  u32(): number {
    this.need(4);
    const x = this.v.getUint32(this.pos, true);
    this.pos += 4;
    return x;
  }
  str(n: number): string {
    this.need(n);
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(this.v.getUint8(this.pos + i));
    this.pos += n;
    return s;
  }
}

interface Element {
  tag: number;
  vr: string;
  length: number;
}

function header(r: Reader): Element {
  const group = r.u16();
  const element = r.u16();
  const tag = tagOf(group, element);
  if (group === 0xfffe) return { tag, vr: '', length: r.u32() };
  const vr = r.str(2);
  if (!/^[A-Z]{2}$/.test(vr)) throw new DicomdirError('DICOMDIR is not Explicit VR Little Endian');
  const length = LONG_VRS.has(vr) ? (r.u16(), r.u32()) : r.u16();
  return { tag, vr, length };
}

/** skipUndefined skips the items of a sequence of undefined length up to its delimiter. */
function skipSequence(r: Reader, length: number, onItem?: (end: number) => void): void {
  const end = length === UNDEFINED ? Infinity : r.pos + length;
  while (r.pos < end) {
    const h = header(r);
    if (h.tag === SEQ_END) return;
    if (h.tag !== ITEM) throw new DicomdirError('DICOMDIR sequence is malformed');
    const itemEnd = h.length === UNDEFINED ? Infinity : r.pos + h.length;
    if (onItem) onItem(itemEnd);
    else skipItem(r, itemEnd);
  }
  if (length === UNDEFINED) throw new DicomdirError('DICOMDIR is cut short');
}

/** skipItem walks an item's elements up to its end (a known offset or a delimiter). */
function skipItem(r: Reader, end: number, visit?: (e: Element, valueAt: number) => void): void {
  while (r.pos < end) {
    if (end === Infinity && r.pos >= r.v.byteLength) throw new DicomdirError('DICOMDIR is cut short');
    const e = header(r);
    if (e.tag === ITEM_END) return;
    const at = r.pos;
    if (e.vr === 'SQ' || (e.vr === 'UN' && e.length === UNDEFINED)) {
      skipSequence(r, e.length);
      continue;
    }
    if (e.length === UNDEFINED) throw new DicomdirError('DICOMDIR has an element of undefined length');
    r.need(e.length);
    visit?.(e, at);
    r.pos = at + e.length;
  }
}

/**
 * parseDicomdir lists the files a DICOMDIR names. It throws DicomdirError when the bytes are
 * not a DICOMDIR it can read.
 */
export function parseDicomdir(buf: ArrayBuffer | Uint8Array): DicomdirEntry[] {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(v);
  if (bytes.length < 132 || String.fromCharCode(...bytes.subarray(128, 132)) !== 'DICM') {
    throw new DicomdirError('not a DICOM file');
  }
  r.pos = 132;
  const out: DicomdirEntry[] = [];
  const text = (at: number, len: number) => {
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(bytes[at + i]!);
    return s.replace(/[\0 ]+$/, '').trim();
  };
  let found = false;
  while (r.pos < v.byteLength) {
    const e = header(r);
    if (e.tag === RECORD_SEQ) {
      found = true;
      skipSequence(r, e.length, (itemEnd) => {
        let path = '';
        let recordType = '';
        skipItem(r, itemEnd, (el, at) => {
          if (el.tag === FILE_ID) path = text(at, el.length).split('\\').map((p) => p.trim()).filter(Boolean).join('/');
          else if (el.tag === RECORD_TYPE) recordType = text(at, el.length);
        });
        if (path) out.push({ path, recordType });
      });
      continue;
    }
    if (e.vr === 'SQ' || e.length === UNDEFINED) {
      skipSequence(r, e.length);
      continue;
    }
    r.need(e.length);
    r.pos += e.length;
  }
  if (!found) throw new DicomdirError('no Directory Record Sequence');
  return out;
}

/**
 * discKey makes a path comparable with a DICOMDIR's file ID: ISO 9660 names are upper case and
 * may carry a ";1" version or a trailing dot, which operating systems show differently.
 */
export function discKey(path: string): string {
  return path
    .split('/')
    .filter(Boolean)
    .map((p) => p.replace(/;\d+$/, '').replace(/\.$/, '').toUpperCase())
    .join('/');
}
