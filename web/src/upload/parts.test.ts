import { describe, expect, it, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { discKey, parseDicomdir, DicomdirError } from './dicomdir';
import { kindOfHead, sniff } from './sniff';
import { reasonForResult, reasonForStatus, retriable, REASON_KEYS } from './reasons';
import { resultOutcome, shouldRetryStatus } from './tus';
import { plan, pickedOfInput } from './files';
import { localDoneStore } from './done';
import zh from '@/i18n/zh-CN.json';
import en from '@/i18n/en.json';

// A tiny Explicit VR Little Endian writer, enough for DICOMDIR fixtures.
function el(group: number, element: number, vr: string, value: Uint8Array | string, undefinedLength = false): Uint8Array {
  let v = typeof value === 'string' ? new TextEncoder().encode(value) : value;
  if (v.length % 2) v = Uint8Array.from([...v, 0x20]);
  const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
  const head = new DataView(new ArrayBuffer(long ? 12 : 8));
  head.setUint16(0, group, true);
  head.setUint16(2, element, true);
  head.setUint8(4, vr.charCodeAt(0));
  head.setUint8(5, vr.charCodeAt(1));
  if (long) head.setUint32(8, undefinedLength ? 0xffffffff : v.length, true);
  else head.setUint16(6, v.length, true);
  const tail = undefinedLength ? delim(0xe0dd) : new Uint8Array();
  return concat(new Uint8Array(head.buffer), v, tail);
}
function delim(element: number, length = 0): Uint8Array {
  const d = new DataView(new ArrayBuffer(8));
  d.setUint16(0, 0xfffe, true);
  d.setUint16(2, element, true);
  d.setUint32(4, length, true);
  return new Uint8Array(d.buffer);
}
function item(content: Uint8Array, undefinedLength: boolean): Uint8Array {
  return undefinedLength ? concat(delim(0xe000, 0xffffffff), content, delim(0xe00d)) : concat(delim(0xe000, content.length), content);
}
function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
function dicomdir(files: string[], undefinedLength: boolean): Uint8Array {
  const pre = new Uint8Array(132);
  pre.set(new TextEncoder().encode('DICM'), 128);
  const records = files.map((f, i) =>
    item(
      concat(
        el(0x0004, 0x1430, 'CS', i === 0 ? 'PATIENT' : 'IMAGE'),
        // A nested sequence in a record (skipped).
        el(0x0040, 0xa730, 'SQ', item(el(0x0040, 0xa010, 'CS', 'CONTAINS'), undefinedLength), undefinedLength),
        ...(i === 0 ? [] : [el(0x0004, 0x1500, 'CS', f)]),
      ),
      undefinedLength,
    ),
  );
  return concat(
    pre,
    el(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
    el(0x0004, 0x1130, 'CS', 'DISC1'),
    el(0x0004, 0x1220, 'SQ', concat(...records), undefinedLength),
  );
}

describe('DICOMDIR', () => {
  for (const undef of [false, true]) {
    it(`lists the files of image records (${undef ? 'undefined' : 'defined'} lengths)`, () => {
      const got = parseDicomdir(dicomdir(['', 'DICOM\\ST000001\\IM000001', 'DICOM\\ST000001\\IM000002'], undef));
      expect(got).toEqual([
        { path: 'DICOM/ST000001/IM000001', recordType: 'IMAGE' },
        { path: 'DICOM/ST000001/IM000002', recordType: 'IMAGE' },
      ]);
    });
  }

  it('refuses what is not a DICOMDIR', () => {
    expect(() => parseDicomdir(new Uint8Array(10))).toThrow(DicomdirError);
    const noRecords = concat(new Uint8Array(128), new TextEncoder().encode('DICM'), el(0x0002, 0x0010, 'UI', '1.2'));
    expect(() => parseDicomdir(noRecords)).toThrow(DicomdirError);
    const cut = dicomdir(['', 'A\\B'], true).slice(0, -10);
    expect(() => parseDicomdir(cut)).toThrow(DicomdirError);
  });

  it("reads DCMTK dcmmkdir's DICOMDIR", (ctx) => {
    const bin = ['/usr/bin/dcmmkdir', '/usr/bin/dump2dcm'];
    if (!bin.every((b) => fs.existsSync(b))) return ctx.skip();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dicomdir-'));
    try {
      fs.mkdirSync(path.join(dir, 'DICOM'));
      for (const n of [1, 2]) {
        const dump = path.join(dir, `im${n}.dump`);
        fs.writeFileSync(dump, [
          '(0002,0001) OB 00\\01', '(0002,0002) UI =SecondaryCaptureImageStorage', `(0002,0003) UI 1.2.3.4.${n}`, '(0002,0010) UI =LittleEndianExplicit',
          '(0008,0016) UI =SecondaryCaptureImageStorage', `(0008,0018) UI 1.2.3.4.${n}`, '(0008,0020) DA 20260101', '(0008,0030) TM 120000',
          '(0008,0050) SH A1', '(0008,0060) CS OT', '(0008,0064) CS WSD', '(0010,0010) PN Wang^Fang', '(0010,0020) LO P1', '(0020,000d) UI 1.2.3',
          '(0020,000e) UI 1.2.3.1', '(0020,0010) SH 1', '(0020,0011) IS 1', `(0020,0013) IS ${n}`, '(0028,0002) US 1', '(0028,0004) CS MONOCHROME2',
          '(0028,0010) US 2', '(0028,0011) US 2', '(0028,0100) US 8', '(0028,0101) US 8', '(0028,0102) US 7', '(0028,0103) US 0', '(7fe0,0010) OB 00\\01\\02\\03',
        ].join('\n'));
        execFileSync('/usr/bin/dump2dcm', ['+te', dump, path.join(dir, 'DICOM', `IM00000${n}`)]);
      }
      execFileSync('/usr/bin/dcmmkdir', ['-Pgp', '+r', '+id', dir, '+D', path.join(dir, 'DICOMDIR'), 'DICOM'], { cwd: dir, stdio: 'pipe' });
      const got = parseDicomdir(fs.readFileSync(path.join(dir, 'DICOMDIR')));
      expect(got.map((e) => e.path).sort()).toEqual(['DICOM/IM000001', 'DICOM/IM000002']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('compares paths as ISO 9660 does', () => {
    expect(discKey('cd/dicom/im000001;1')).toBe(discKey('CD/DICOM/IM000001'));
    expect(discKey('CD/README.')).toBe('CD/README');
  });
});

describe('plan', () => {
  const f = (name: string, bytes: Uint8Array | string = 'x') => new File([bytes as BlobPart], name);
  it('sends what a DICOMDIR lists, reports what it lists but is missing, leaves the rest of the disc', async () => {
    const dd = dicomdir(['', 'DICOM\\IM1', 'DICOM\\IM2', 'DICOM\\IM3'], true);
    const picked = [
      { file: f('DICOMDIR', dd), path: 'CD/DICOMDIR' },
      { file: f('im1'), path: 'CD/dicom/im1' },
      { file: f('IM2'), path: 'CD/DICOM/IM2' },
      { file: f('viewer.exe'), path: 'CD/VIEWER/viewer.exe' },
      { file: f('other.dcm'), path: 'other/other.dcm' },
    ];
    const p = await plan(picked);
    expect(p.send.map((s) => s.path)).toEqual(['CD/dicom/im1', 'CD/DICOM/IM2', 'other/other.dcm']);
    expect(p.missing).toEqual(['CD/DICOM/IM3']);
    expect(p.dicomdirs).toEqual([{ path: 'CD/DICOMDIR', listed: 3 }]);
    expect(p.unlisted).toBe(1);
  });

  it('sends a folder whole when its DICOMDIR cannot be read', async () => {
    const picked = [{ file: f('DICOMDIR', 'garbage'), path: 'CD/DICOMDIR' }, { file: f('a'), path: 'CD/a' }];
    const p = await plan(picked);
    expect(p.badDicomdirs).toEqual(['CD/DICOMDIR']);
    expect(p.send.map((s) => s.path)).toEqual(['CD/DICOMDIR', 'CD/a']);
  });

  it('keeps the path a folder picker gives, and the name as the browser gives it (GBK names included)', () => {
    const a = f('����.dcm');
    Object.defineProperty(a, 'webkitRelativePath', { value: 'CT/����.dcm' });
    expect(pickedOfInput([a, f('b.dcm')]).map((p) => p.path)).toEqual(['CT/����.dcm', 'b.dcm']);
  });
});

describe('sniff', () => {
  it('tells DICOM, tar, empty and other from the first bytes', async () => {
    const dicm = new Uint8Array(200);
    dicm.set([0x44, 0x49, 0x43, 0x4d], 128);
    const tar = new Uint8Array(512);
    tar.set(new TextEncoder().encode('ustar'), 257);
    expect(kindOfHead(dicm, 200)).toBe('dicom');
    expect(kindOfHead(tar, 512)).toBe('tar');
    expect(kindOfHead(new Uint8Array(0), 0)).toBe('empty');
    expect(kindOfHead(new TextEncoder().encode('hello'), 5)).toBe('other');
    expect(await sniff(new Blob([dicm]))).toBe('dicom');
    expect(await sniff(new Blob([]))).toBe('empty');
    expect(await sniff(new Blob(['not a dicom file at all']))).toBe('other');
  });

  it('reads only the head of a file', async () => {
    const big = new Blob([new Uint8Array(8 << 20)]);
    const slice = vi.spyOn(big, 'slice');
    await sniff(big);
    expect(slice).toHaveBeenCalledWith(0, 512);
  });
});

describe('reasons', () => {
  it('maps HTTP answers to plain words', () => {
    expect(reasonForStatus(0).key).toBe('upload.reason.network');
    expect(reasonForStatus(401).key).toBe('upload.reason.session');
    expect(reasonForStatus(403, JSON.stringify({ detail: 'missing or wrong CSRF token' })).key).toBe('upload.reason.stalePage');
    expect(reasonForStatus(403).key).toBe('upload.reason.forbidden');
    expect(reasonForStatus(413).key).toBe('upload.reason.tooLarge');
    expect(reasonForStatus(503).key).toBe('upload.reason.busy');
    expect(reasonForStatus(500).key).toBe('upload.reason.server');
    expect(reasonForStatus(400, JSON.stringify({ detail: 'Upload-Length is required' }))).toEqual({ key: 'upload.reason.refused', params: { detail: 'Upload-Length is required' } });
    expect(reasonForStatus(418)).toEqual({ key: 'upload.reason.refusedStatus', params: { status: 418 } });
  });

  it("maps the server's verdict on a file", () => {
    expect(reasonForResult({ outcome: 'stored' })).toBeNull();
    expect(reasonForResult({ outcome: 'already-stored' })).toBeNull();
    expect(reasonForResult({ outcome: 'conflict', error: 'x' })?.key).toBe('upload.reason.conflict');
    expect(reasonForResult({ outcome: 'failed', error: '415 Unsupported Media Type: neither a DICOM Part 10 file' })?.key).toBe('upload.reason.notDicom');
    expect(reasonForResult({ outcome: 'failed', error: 'this instance cannot be stored for your institution: its Study or SOP Instance UID is already in use' })?.key).toBe('upload.reason.uidInUse');
    expect(reasonForResult({ outcome: 'failed', error: 'invalid DICOM instance: no SOP Instance UID' })).toEqual({ key: 'upload.reason.invalidDicom', params: { detail: 'no SOP Instance UID' } });
    expect(reasonForResult({ outcome: 'failed', error: 'checksum mismatch' })?.key).toBe('upload.reason.checksum');
    expect(reasonForResult({ outcome: 'failed', error: 'something new' })).toEqual({ key: 'upload.reason.refused', params: { detail: 'something new' } });
  });

  it('retries what may pass, not refusals', () => {
    expect(retriable({ key: 'upload.reason.network' })).toBe(true);
    expect(retriable({ key: 'upload.reason.busy' })).toBe(true);
    expect(retriable({ key: 'upload.reason.notDicom' })).toBe(false);
    expect(shouldRetryStatus(0)).toBe(true);
    expect(shouldRetryStatus(502)).toBe(true);
    expect(shouldRetryStatus(413)).toBe(false);
    expect(shouldRetryStatus(401)).toBe(false);
  });

  it('has words for every reason in both languages, with the same placeholders', () => {
    const reasons = (c: unknown) => (c as { upload: { reason: Record<string, string> } }).upload.reason;
    for (const k of REASON_KEYS) {
      expect(reasons(zh)[k], `zh ${k}`).toBeTruthy();
      expect(reasons(en)[k], `en ${k}`).toBeTruthy();
    }
  });
});

describe('resultOutcome', () => {
  const base = { upload: 'u', stored: 0, alreadyStored: 0, conflicts: 0, failed: 0 };
  it('reads a single file', () => {
    expect(resultOutcome({ ...base, stored: 1, files: [{ name: 'a', outcome: 'stored', studyInstanceUID: '1.2' }] }, { path: 'a' })).toEqual({ outcome: 'stored', studyUID: '1.2' });
    expect(resultOutcome({ ...base, alreadyStored: 1, files: [{ name: 'a', outcome: 'already-stored' }] }, { path: 'a' }).outcome).toBe('duplicate');
    expect(resultOutcome({ ...base, failed: 1, files: [{ name: 'a', outcome: 'failed', error: 'checksum mismatch' }] }, { path: 'a' })).toEqual({ outcome: 'failed', reason: { key: 'upload.reason.checksum' } });
  });
  it('reads a tar bundle', () => {
    const r = resultOutcome({ ...base, stored: 2, failed: 1, files: [{ name: 'x', outcome: 'stored', studyInstanceUID: '9' }, { name: 'y', outcome: 'stored' }, { name: 'z', outcome: 'failed' }] }, { path: 'b.tar' });
    expect(r).toEqual({ outcome: 'stored', studyUID: '9', bundle: { stored: 2, alreadyStored: 0, failed: 1 } });
  });
});

describe('localDoneStore', () => {
  it('remembers across instances, writing once for many files', () => {
    vi.useFakeTimers();
    const set = vi.spyOn(Storage.prototype, 'setItem');
    const a = localDoneStore('u1');
    for (let i = 0; i < 1000; i++) a.set(`f${i}`, 'stored');
    vi.advanceTimersByTime(1000);
    expect(set).toHaveBeenCalledTimes(1);
    expect(localDoneStore('u1').get('f999')).toBe('stored');
    expect(localDoneStore('u2').get('f999')).toBeUndefined();
    set.mockRestore();
    vi.useRealTimers();
  });
});
