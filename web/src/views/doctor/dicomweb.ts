import { ApiError, NETWORK_ERROR, problemFrom } from '@/api/errors';

// The few DICOMweb (QIDO-RS) reads the doctor screens make until the viewer of the next issue
// brings its own loader. DICOM JSON (PS3.18 F.2): attributes by tag, values in arrays.
type DicomJSON = Record<string, { vr: string; Value?: unknown[] }>;

const str = (o: DicomJSON, tag: string): string => {
  const v = o[tag]?.Value?.[0];
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && v !== null && 'Alphabetic' in v) return String((v as { Alphabetic: string }).Alphabetic);
  return String(v);
};
const num = (o: DicomJSON, tag: string): number => Number(str(o, tag)) || 0;

export interface SeriesInfo {
  uid: string;
  modality: string;
  description: string;
  number: number;
  instances: number;
}

export interface InstanceInfo {
  uid: string;
  number: number;
}

const enc = encodeURIComponent;

async function qido(path: string): Promise<DicomJSON[]> {
  let res: Response;
  try {
    res = await fetch(path, { headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError({ type: 'about:blank', title: 'Network error', status: NETWORK_ERROR, detail: String(err) });
  }
  if (res.status === 204) return [];
  if (!res.ok) throw new ApiError(await problemFrom(res));
  return (await res.json()) as DicomJSON[];
}

export async function seriesOf(study: string): Promise<SeriesInfo[]> {
  const list = await qido(`/dicom-web/studies/${enc(study)}/series`);
  return list
    .map((o) => ({
      uid: str(o, '0020000E'),
      modality: str(o, '00080060'),
      description: str(o, '0008103E'),
      number: num(o, '00200011'),
      instances: num(o, '00201209'),
    }))
    .sort((a, b) => a.number - b.number);
}

export async function instancesOf(study: string, series: string): Promise<InstanceInfo[]> {
  const list = await qido(`/dicom-web/studies/${enc(study)}/series/${enc(series)}/instances`);
  return list.map((o) => ({ uid: str(o, '00080018'), number: num(o, '00200013') })).sort((a, b) => a.number - b.number || (a.uid < b.uid ? -1 : 1));
}

export function seriesThumbnail(study: string, series: string): string {
  return `/dicom-web/studies/${enc(study)}/series/${enc(series)}/thumbnail`;
}

/** renderedURL: an instance's first frame as JPEG, fitted into size x size pixels. */
export function renderedURL(study: string, series: string, instance: string, size: number): string {
  return `/dicom-web/studies/${enc(study)}/series/${enc(series)}/instances/${enc(instance)}/rendered?viewport=${size},${size}`;
}
