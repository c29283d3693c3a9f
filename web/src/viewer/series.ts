// What the viewer reads from /dicom-web (PS3.18): the series of a study (QIDO-RS) and a
// series' metadata (WADO-RS, DICOM JSON), turned into a stack of `wadors:` image IDs and the
// facts the overlays and tools need. Cookies authenticate (same origin); a study the clinic's
// own station has whole is read from the station instead (local.ts), with a grant.
import { ApiError, NETWORK_ERROR, problemFrom } from '@/api/errors';
import { authHeaders, localSource, studyOfLocalURL } from './local';
import { cineRate, sortInstances, stackOf, type InstanceEntry, type StackEntry } from './math';

/** DICOM JSON (PS3.18 F.2): attributes by tag, values in arrays. */
export type DicomJSON = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string }>;

const enc = encodeURIComponent;

// Tags by keyword (PS3.6).
export const tag = {
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  Modality: '00080060',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  RecommendedDisplayFrameRate: '00082144',
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  PatientAge: '00101010',
  CineRate: '00180040',
  FrameTime: '00181063',
  ImagerPixelSpacing: '00181164',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  SliceLocation: '00201041',
  NumberOfSeriesRelatedInstances: '00201209',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  PixelSpacing: '00280030',
} as const;

export function str(o: DicomJSON | undefined, t: string): string {
  const v = o?.[t]?.Value?.[0];
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && 'Alphabetic' in v) {
    const pn = v as { Alphabetic?: string; Ideographic?: string };
    return String(pn.Ideographic || pn.Alphabetic || '');
  }
  return String(v);
}

export function num(o: DicomJSON | undefined, t: string): number | undefined {
  const s = str(o, t);
  if (s === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

export function nums(o: DicomJSON | undefined, t: string): number[] {
  return (o?.[t]?.Value ?? []).map(Number).filter((n) => Number.isFinite(n));
}

export interface SeriesSummary {
  uid: string;
  modality: string;
  description: string;
  number: number;
  instances: number;
}

async function getJSON(url: string, headers: Record<string, string> = {}): Promise<DicomJSON[]> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { ...headers, Accept: 'application/dicom+json' }, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError({ type: 'about:blank', title: 'Network error', status: NETWORK_ERROR, detail: String(err) });
  }
  if (res.status === 204) return [];
  if (!res.ok) throw new ApiError(await problemFrom(res));
  return (await res.json()) as DicomJSON[];
}

// The series list started ahead (warmStudy) and taken once by the viewer: the consultation
// page asks for the study's series and the first series' metadata while the viewer's code
// downloads. The list is asked again each time the viewer opens (a series may have arrived).
const warm = new Map<string, Promise<unknown>>();
function take<T>(key: string, fetcher: () => Promise<T>): Promise<T> {
  const p = warm.get(key) as Promise<T> | undefined;
  warm.delete(key);
  return p ?? fetcher();
}

/** Modalities without pixels to show: structured reports, key object selections, presentation states, documents. */
const NOT_IMAGES = ['SR', 'KO', 'PR', 'DOC'];

/** viewable: the series the viewer shows, in Series Number order. */
export function viewable(list: SeriesSummary[]): SeriesSummary[] {
  return list.filter((s) => !NOT_IMAGES.includes(s.modality));
}

/**
 * warmStudy starts the viewer's first reads (the study's series, then the first series'
 * metadata) so that they overlap the download of the viewer's code.
 */
export function warmStudy(study: string): void {
  const seriesKey = `series ${study}`;
  if (warm.has(seriesKey)) return;
  const list = fetchSeriesList(study);
  list.catch(() => warm.delete(seriesKey));
  warm.set(seriesKey, list);
  void list.then((l) => {
    const first = viewable(l)[0];
    if (first) fetchSeriesMetadata(study, first.uid).catch(() => undefined);
  }, () => undefined);
}

export function seriesOfStudy(study: string): Promise<SeriesSummary[]> {
  return take(`series ${study}`, () => fetchSeriesList(study));
}

async function fetchSeriesList(study: string): Promise<SeriesSummary[]> {
  const list = await getJSON(`/dicom-web/studies/${enc(study)}/series`);
  return list
    .map((o) => ({
      uid: str(o, tag.SeriesInstanceUID),
      modality: str(o, tag.Modality),
      description: str(o, tag.SeriesDescription),
      number: num(o, tag.SeriesNumber) ?? 0,
      instances: num(o, tag.NumberOfSeriesRelatedInstances) ?? 0,
    }))
    .sort((a, b) => a.number - b.number);
}

export function thumbnailURL(study: string, series: string): string {
  return `/dicom-web/studies/${enc(study)}/series/${enc(series)}/thumbnail`;
}

/** Where each study's metadata and frames come from: the station's origin, when chosen. */
const localStudies = new Map<string, string>();

export type Source = 'local' | 'county';

/**
 * chooseSource decides where a study's pixels come from, given the series the county lists:
 * the clinic's station when it has them all, else the county.
 */
export async function chooseSource(study: string, county: SeriesSummary[]): Promise<Source> {
  const base = await localSource(study, county);
  if (base) localStudies.set(study, base);
  else localStudies.delete(study);
  return base ? 'local' : 'county';
}

function originOf(study: string): string {
  return localStudies.get(study) ?? location.origin;
}

/** requestHeaders are the extra headers of a request to url (image ID or URL): a grant for the station. */
export async function requestHeaders(url: string): Promise<Record<string, string> | undefined> {
  const study = studyOfLocalURL(url);
  return study && localStudies.has(study) ? authHeaders(study) : undefined;
}

/** The base of a series' instance URLs, absolute (the loader keeps it in image IDs). */
export function seriesURL(study: string, series: string): string {
  return `${originOf(study)}/dicom-web/studies/${enc(study)}/series/${enc(series)}`;
}

export function frameImageId(study: string, series: string, instance: string, frame1: number): string {
  return `wadors:${seriesURL(study, series)}/instances/${enc(instance)}/frames/${frame1}`;
}

/** A loaded series: its stack and each instance's metadata (for overlays, spacing, cine). */
export interface LoadedSeries {
  study: string;
  uid: string;
  modality: string;
  stack: StackEntry[];
  meta: Map<string, DicomJSON>;
  /** Frames per second for cine, by instance. */
  fps: Map<string, number>;
}

/** positionAlongNormal: where a slice lies along its normal (for sorting), if it has a plane. */
function positionAlongNormal(o: DicomJSON): number | undefined {
  const ipp = nums(o, tag.ImagePositionPatient);
  const iop = nums(o, tag.ImageOrientationPatient);
  if (ipp.length !== 3 || iop.length !== 6) return undefined;
  const [r0, r1, r2, c0, c1, c2] = iop as [number, number, number, number, number, number];
  const n = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
  return (ipp[0] ?? 0) * (n[0] ?? 0) + (ipp[1] ?? 0) * (n[1] ?? 0) + (ipp[2] ?? 0) * (n[2] ?? 0);
}

/** fetchSeriesMetadata: WADO-RS series metadata, one DICOM JSON data set per instance. */
// A series' metadata is read once per page: the viewer's stack and Cornerstone's loader both
// keep using it, and a study opened again shows without asking again.
const metadata = new Map<string, Promise<DicomJSON[]>>();

export function fetchSeriesMetadata(study: string, series: string): Promise<DicomJSON[]> {
  const url = `${seriesURL(study, series)}/metadata`;
  const key = url;
  let p = metadata.get(key);
  if (!p) {
    p = requestHeaders(url).then((h) => getJSON(url, h));
    p.catch(() => metadata.delete(key));
    metadata.set(key, p);
  }
  return p;
}

/** buildSeries orders a series' metadata into a stack (no I/O). */
export function buildSeries(study: string, series: string, list: DicomJSON[]): LoadedSeries {
  const meta = new Map<string, DicomJSON>();
  const fps = new Map<string, number>();
  const entries: InstanceEntry[] = [];
  for (const o of list) {
    const uid = str(o, tag.SOPInstanceUID);
    if (!uid || !o[tag.Rows]) continue; // no pixels (a structured report, a KOS): not in the stack
    meta.set(uid, o);
    const frames = num(o, tag.NumberOfFrames) ?? 1;
    entries.push({ uid, number: num(o, tag.InstanceNumber) ?? 0, frames, position: positionAlongNormal(o) });
    if (frames > 1) {
      fps.set(uid, cineRate({ cineRate: num(o, tag.CineRate), frameTime: num(o, tag.FrameTime), recommendedRate: num(o, tag.RecommendedDisplayFrameRate) }));
    }
  }
  const stack = stackOf(sortInstances(entries), (uid, f) => frameImageId(study, series, uid, f));
  const first = list[0];
  return { study, uid: series, modality: str(first, tag.Modality), stack, meta, fps };
}
