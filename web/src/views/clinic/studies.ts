import { api } from '@/api/client';

// Reading QIDO-RS study results (DICOM JSON, PS3.18 F.2) into what the clinic screens show.

type Value = string | number | { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
export type DicomJSON = Record<string, { vr: string; Value?: Value[] }>;

export interface StudyRow {
  uid: string;
  patientName: string;
  /** The name as the request form sends it (ideographic first: what the clinic typed). */
  patientNameRaw: string;
  patientId: string;
  sex: '' | 'M' | 'F' | 'O';
  birthDate: string;
  /** Age at the study in whole years, or null when a date is missing. */
  age: number | null;
  modalities: string[];
  date: string;
  description: string;
  series: number;
  instances: number;
}

function first(o: DicomJSON, tag: string): Value | undefined {
  return o[tag]?.Value?.[0];
}

function str(o: DicomJSON, tag: string): string {
  const v = first(o, tag);
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

function num(o: DicomJSON, tag: string): number {
  const v = first(o, tag);
  return typeof v === 'number' ? v : Number(v) || 0;
}

/** personName shows a DICOM PN: the ideographic form (汉字) and, if also given, the alphabetic one. */
export function personName(v: Value | undefined): string {
  if (!v || typeof v !== 'object') return typeof v === 'string' ? v.replace(/\^+/g, ' ').trim() : '';
  const alpha = (v.Alphabetic ?? '').replace(/\^+/g, ' ').trim();
  const ideo = (v.Ideographic ?? '').replace(/\^+/g, '').trim();
  if (ideo && alpha) return `${ideo} (${alpha})`;
  return ideo || alpha;
}

/** ageAt: whole years between two DICOM dates (YYYYMMDD), or null. */
export function ageAt(birth: string, on: string): number | null {
  if (!/^\d{8}$/.test(birth) || !/^\d{8}$/.test(on)) return null;
  const y = Number(on.slice(0, 4)) - Number(birth.slice(0, 4));
  const before = on.slice(4) < birth.slice(4);
  const age = before ? y - 1 : y;
  return age >= 0 && age < 150 ? age : null;
}

/** formatDate: 20260315 -> 2026-03-15. */
export function formatDate(d: string): string {
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d;
}

export function studyRow(o: DicomJSON): StudyRow {
  const name = first(o, '00100010');
  // Chinese names are written family then given name without a space (王芳); others with one.
  const raw = name && typeof name === 'object'
    ? name.Ideographic ? name.Ideographic.replace(/\^+/g, '').trim() : (name.Alphabetic ?? '').replace(/\^+/g, ' ').trim()
    : str(o, '00100010');
  const sex = str(o, '00100040').toUpperCase();
  const birthDate = str(o, '00100030');
  const date = str(o, '00080020');
  return {
    uid: str(o, '0020000D'),
    patientName: personName(name),
    patientNameRaw: raw,
    patientId: str(o, '00100020'),
    sex: sex === 'M' || sex === 'F' || sex === 'O' ? sex : '',
    birthDate,
    age: ageAt(birthDate, date),
    modalities: (o['00080061']?.Value ?? []).filter((v): v is string => typeof v === 'string'),
    date,
    description: str(o, '00081030'),
    series: num(o, '00201206'),
    instances: num(o, '00201208'),
  };
}

export interface StudySearch {
  name?: string;
  patientId?: string;
  /** YYYY-MM-DD (an <input type=date>'s value). */
  from?: string;
  to?: string;
  uid?: string;
}

/** qidoQuery turns the screen's search into QIDO-RS matching keys (docs/dicomweb.md). */
export function qidoQuery(s: StudySearch): Record<string, string> {
  const q: Record<string, string> = {};
  const name = s.name?.trim();
  // Any part of any name form: "王" finds 王芳, "wang" finds WANG^FANG.
  if (name) q.PatientName = `*${name.replace(/[*?]/g, '')}*`;
  const id = s.patientId?.trim();
  if (id) q.PatientID = id.includes('*') || id.includes('?') ? id : `${id}*`;
  const from = (s.from ?? '').replaceAll('-', '');
  const to = (s.to ?? '').replaceAll('-', '');
  if (from || to) q.StudyDate = from === to ? from : `${from}-${to}`;
  if (s.uid) q.StudyInstanceUID = s.uid;
  return q;
}

/**
 * searchStudies asks QIDO-RS for one page of the institution's studies (the server scopes the
 * answer to what the caller may see). more: another page exists.
 */
export async function searchStudies(s: StudySearch, offset: number, limit: number): Promise<{ rows: StudyRow[]; more: boolean }> {
  const params = new URLSearchParams(qidoQuery(s));
  params.set('limit', String(limit + 1));
  params.set('offset', String(offset));
  params.set('includefield', 'PatientBirthDate,PatientSex');
  const { data } = await api.GET('/dicom-web/studies', {
    params: { query: {} },
    querySerializer: () => params.toString(),
    headers: { Accept: 'application/dicom+json' },
  });
  const list = (Array.isArray(data) ? data : []) as DicomJSON[];
  return { rows: list.slice(0, limit).map(studyRow), more: list.length > limit };
}

/** thumbnailURL: the server's rendered thumbnail of a study (middle image of its first series). */
export function thumbnailURL(uid: string, size = 96): string {
  return `/dicom-web/studies/${encodeURIComponent(uid)}/thumbnail?viewport=${size},${size}`;
}
