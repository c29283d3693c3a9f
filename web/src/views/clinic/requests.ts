import { api } from '@/api/client';
import type { components } from '@/api/schema';

export type Consultation = components['schemas']['Consultation'];
export type ConsultationRequest = components['schemas']['ConsultationRequest'];
export type State = components['schemas']['State'];
export type Institution = components['schemas']['Institution'];
export type Doctor = components['schemas']['Doctor'];
export type Report = components['schemas']['Report'];

/**
 * How a clinic sees a consultation's state: requested, accepted and scheduled are waiting for
 * the hospital; live can be joined; reporting is "to report"; signed and closed are done.
 */
export type Phase = 'requested' | 'scheduled' | 'live' | 'reporting' | 'done' | 'declined' | 'cancelled';

export function phaseOf(s: State): Phase {
  switch (s) {
    case 'accepted':
      return 'requested';
    case 'signed':
    case 'closed':
      return 'done';
    default:
      return s;
  }
}

export const CANCELLABLE: ReadonlySet<State> = new Set(['requested', 'accepted', 'scheduled']);
export const CONSENT_REPLACEABLE = CANCELLABLE;

/** The live room of a consultation (the app's route `room`). */
export function liveRoomURL(id: number): string {
  return `/consultations/${id}/live`;
}

export function printURL(id: number): string {
  return `/api/consultations/${id}/report/print`;
}

export function consentURL(id: number): string {
  return `/api/consultations/${id}/consent-form`;
}

/** The consent form's limits (the server's: PDF, JPEG or PNG, 20 MiB). */
export const CONSENT_TYPES = ['application/pdf', 'image/jpeg', 'image/png'] as const;
export type ConsentType = (typeof CONSENT_TYPES)[number];
export const CONSENT_MAX = 20 * 1024 * 1024;
/** Photos larger than this, or in another image format, are re-encoded as JPEG in the browser. */
const PHOTO_MAX_SIDE = 2000;
const PHOTO_KEEP_BELOW = 3 * 1024 * 1024;

export class ConsentFileError extends Error {
  constructor(readonly key: string) {
    super(key);
  }
}

function loadImage(blob: Blob): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      URL.revokeObjectURL(url);
      resolve(img);
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new ConsentFileError('request.validation.consentFormat'));
    };
    img.src = url;
  });
}

/**
 * prepareConsent makes a picked file sendable: a PDF, JPEG or PNG as it is; a photo that is
 * large (a phone camera's 10 MB) or in another image format made a JPEG of at most 2000 px,
 * which is readable and goes over 4G in seconds.
 */
export async function prepareConsent(f: File): Promise<{ blob: Blob; type: ConsentType; name: string }> {
  const type = f.type as ConsentType;
  if (type === 'application/pdf') {
    if (f.size > CONSENT_MAX) throw new ConsentFileError('request.validation.consentTooLarge');
    return { blob: f, type, name: f.name };
  }
  if (!f.type.startsWith('image/')) throw new ConsentFileError('request.validation.consentFormat');
  if ((type === 'image/jpeg' || type === 'image/png') && f.size <= PHOTO_KEEP_BELOW) return { blob: f, type, name: f.name };
  const img = await loadImage(f);
  const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
  canvas.getContext('2d')?.drawImage(img, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise<Blob | null>((r) => canvas.toBlob(r, 'image/jpeg', 0.85));
  if (!blob) throw new ConsentFileError('request.validation.consentFormat');
  if (blob.size > CONSENT_MAX) throw new ConsentFileError('request.validation.consentTooLarge');
  return { blob, type: 'image/jpeg', name: f.name.replace(/\.[^.]*$/, '') + '.jpg' };
}

/** sendConsent puts the consent form of a consultation (PUT .../consent-form, the file as the body). */
export async function sendConsent(id: number, c: { blob: Blob; type: ConsentType; name: string }): Promise<Consultation | undefined> {
  const { data } = await api.PUT('/api/consultations/{id}/consent-form', {
    params: { path: { id }, query: { filename: c.name.slice(-200) } },
    body: c.blob as unknown as string,
    bodySerializer: (b: unknown) => b as Blob,
    headers: { 'Content-Type': c.type },
  });
  return data;
}

/** The form's fields and their checks; messages are request.validation.* keys. */
export interface RequestDraft {
  studyUID: string;
  patientName: string;
  clinicalQuestion: string;
  purpose: string;
  urgency: '' | 'routine' | 'urgent' | 'emergency';
  hospitalId: number | null;
  specialty: string;
  doctorId: number | null;
  /** An <input type=datetime-local>'s value (the device's local time), or "". */
  wishedAt: string;
  consentConfirmed: boolean;
  consentFile: File | null;
  recordingConsent: boolean;
}

export function validateDraft(d: RequestDraft, now = new Date()): Partial<Record<keyof RequestDraft, string>> {
  const e: Partial<Record<keyof RequestDraft, string>> = {};
  if (!d.studyUID) e.studyUID = 'request.validation.study';
  if (!d.patientName.trim()) e.patientName = 'request.validation.patientName';
  else if ([...d.patientName].length > 200) e.patientName = 'request.validation.patientNameLong';
  if (!d.clinicalQuestion.trim()) e.clinicalQuestion = 'request.validation.question';
  else if ([...d.clinicalQuestion].length > 4000) e.clinicalQuestion = 'request.validation.questionLong';
  if (!d.purpose.trim()) e.purpose = 'request.validation.purpose';
  else if ([...d.purpose].length > 1000) e.purpose = 'request.validation.purposeLong';
  if (!d.urgency) e.urgency = 'request.validation.urgency';
  if (!d.hospitalId) e.hospitalId = 'request.validation.hospital';
  if (d.wishedAt) {
    const t = new Date(d.wishedAt);
    if (Number.isNaN(t.getTime())) e.wishedAt = 'request.validation.wishedAt';
    else if (t.getTime() < now.getTime() - 60_000) e.wishedAt = 'request.validation.wishedAtPast';
  }
  if (!d.consentConfirmed) e.consentConfirmed = 'request.validation.consent';
  if (!d.consentFile) e.consentFile = 'request.validation.consentFile';
  return e;
}
