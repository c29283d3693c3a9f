import type { UploadFile } from '@/live/protocol';

/** Why a file did not reach the server, as a message key of the upload.reason.* catalog. */
export interface Reason {
  key: string;
  params?: Record<string, string | number>;
}

/** Whether trying the same file again later may work (the link, the server's load). */
export function retriable(r: Reason): boolean {
  return r.key === 'upload.reason.network' || r.key === 'upload.reason.server' || r.key === 'upload.reason.busy' || r.key === 'upload.reason.checksum';
}

const reason = (key: string, params?: Record<string, string | number>): Reason => (params ? { key: `upload.reason.${key}`, params } : { key: `upload.reason.${key}` });

/** reasonForStatus says what an HTTP answer of the tus endpoint means for the file (0: no answer). */
export function reasonForStatus(status: number, body = ''): Reason {
  const detail = problemDetail(body);
  switch (true) {
    case status === 0:
      return reason('network');
    case status === 401:
      return reason('session');
    case status === 403:
      return /CSRF/i.test(detail) ? reason('stalePage') : /password must be changed/.test(detail) ? reason('passwordChange') : reason('forbidden');
    case status === 413:
      return reason('tooLarge');
    case status === 415:
      return reason('notDicom');
    case status === 423 || status === 429 || status === 503:
      return reason('busy');
    case status >= 500:
      return reason('server');
    default:
      return detail ? reason('refused', { detail }) : reason('refusedStatus', { status });
  }
}

/** problemDetail reads an RFC 9457 problem's detail from a response body, or "". */
export function problemDetail(body: string): string {
  if (!body) return '';
  try {
    const p = JSON.parse(body) as { detail?: unknown };
    return typeof p.detail === 'string' ? p.detail : '';
  } catch {
    return '';
  }
}

/**
 * reasonForResult maps the server's verdict on one stored file (GET /api/uploads/{id}/result)
 * to words a clinic technician understands. Null: the file is stored (or already was).
 */
export function reasonForResult(f: Pick<UploadFile, 'outcome' | 'error'>): Reason | null {
  const err = f.error ?? '';
  switch (f.outcome) {
    case 'stored':
    case 'already-stored':
      return null;
    case 'conflict':
      return reason('conflict');
  }
  if (/neither a DICOM|Unsupported Media Type|DICM/i.test(err)) return reason('notDicom');
  if (/already in use/i.test(err)) return reason('uidInUse');
  if (/too large|larger than/i.test(err)) return reason('tooLarge');
  if (/checksum/i.test(err)) return reason('checksum');
  if (/study instance UID mismatch/i.test(err)) return reason('studyMismatch');
  if (/invalid DICOM/i.test(err)) return reason('invalidDicom', { detail: err.replace(/^invalid DICOM instance:?\s*/i, '') || err });
  return reason('refused', { detail: err || f.outcome });
}

/** Every reason key, for the catalog test. */
export const REASON_KEYS = [
  'network', 'session', 'stalePage', 'passwordChange', 'forbidden', 'tooLarge', 'notDicom', 'busy', 'server', 'refused',
  'refusedStatus', 'conflict', 'uidInUse', 'checksum', 'studyMismatch', 'invalidDicom', 'empty', 'unreadable', 'missingOnDisc',
  'tooLargeLocal',
] as const;
