import { Upload, type DetailedError, type HttpRequest, type UrlStorage } from 'tus-js-client';
import type { UploadResult } from '@/live/protocol';
import { reasonForResult, reasonForStatus, type Reason } from './reasons';
import type { QueueItem, SendResult, Transport } from './queue';

export const UPLOAD_ENDPOINT = '/api/uploads/';

export interface TusOptions {
  endpoint?: string;
  /** The session's CSRF token, sent on POST, PATCH and DELETE (the server refuses them without). */
  csrfToken: () => string;
  /** Who is uploading: one browser's uploads of two users are never mixed up. */
  userKey: string;
  /**
   * Bytes per PATCH. Large enough that round trips do not count (several files are in flight
   * anyway), small enough that the browser's upload progress stays fine-grained.
   */
  chunkSize?: number;
  urlStorage?: UrlStorage;
  /** Quick retries by tus-js-client inside one send (a dropped link, a restarting server). */
  retryDelays?: number[];
  fetchImpl?: typeof fetch;
}

const UNSAFE = new Set(['POST', 'PATCH', 'DELETE']);

/** errorStatus reads the HTTP status of a tus-js-client error (0: no answer). */
function errorOf(err: Error | DetailedError): { status: number; body: string } {
  const res = (err as DetailedError).originalResponse;
  if (!res) return { status: 0, body: '' };
  return { status: res.getStatus(), body: res.getBody() ?? '' };
}

/** shouldRetry: tus-js-client tries again quickly on what may pass; a refusal is final. */
export function shouldRetryStatus(status: number): boolean {
  return status === 0 || status === 409 || status === 423 || status === 429 || (status >= 500 && status !== 501);
}

/**
 * tusTransport sends one file as one tus upload to /api/uploads/. tus-js-client keeps each
 * upload's URL under a fingerprint (the file's path, size and date, and the user) in
 * localStorage: a file picked again after a reload or a cut link continues from the byte the
 * server has. When the last byte is in, the server has ingested the file and says how in
 * Upload-Result.
 */
export function tusTransport(o: TusOptions): Transport {
  const endpoint = o.endpoint ?? UPLOAD_ENDPOINT;
  const doFetch = o.fetchImpl ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));

  async function outcome(resultURL: string | undefined, item: QueueItem): Promise<SendResult> {
    if (!resultURL) return { outcome: 'stored' };
    let res: Response;
    try {
      res = await doFetch(resultURL, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch {
      return { outcome: 'failed', reason: { key: 'upload.reason.network' } };
    }
    if (!res.ok) return { outcome: 'failed', reason: reasonForStatus(res.status, await res.text().catch(() => '')) };
    const r = (await res.json()) as UploadResult;
    return resultOutcome(r, item);
  }

  return {
    send(item: QueueItem, onProgress: (sent: number) => void, signal: AbortSignal): Promise<SendResult> {
      return new Promise<SendResult>((resolve) => {
        let settled = false;
        const settle = (r: SendResult) => {
          if (settled) return;
          settled = true;
          resolve(r);
        };
        const file = item.file;
        if (!file) {
          settle({ outcome: 'failed', reason: { key: 'upload.reason.unreadable' } });
          return;
        }
        const up = new Upload(file, {
          endpoint,
          chunkSize: o.chunkSize ?? 64 * 1024 * 1024,
          retryDelays: o.retryDelays ?? [0, 1000, 3000, 5000, 10000],
          metadata: { filename: item.path, filetype: file.type || 'application/dicom' },
          fingerprint: () => Promise.resolve(`sanping:${o.userKey}:${item.fingerprint}`),
          storeFingerprintForResuming: true,
          // This browser's record of sent files (DoneStore) takes over once a file is in.
          removeFingerprintOnSuccess: true,
          ...(o.urlStorage ? { urlStorage: o.urlStorage } : {}),
          onBeforeRequest(req: HttpRequest) {
            if (UNSAFE.has(req.getMethod())) req.setHeader('X-CSRF-Token', o.csrfToken());
          },
          onShouldRetry(err: DetailedError) {
            if (signal.aborted) return false;
            return shouldRetryStatus(errorOf(err).status);
          },
          onProgress(sent: number) {
            onProgress(sent);
          },
          onSuccess({ lastResponse }) {
            void outcome(lastResponse.getHeader('Upload-Result'), item).then(settle);
          },
          onError(err: Error) {
            if (signal.aborted) return settle({ outcome: 'aborted' });
            const { status, body } = errorOf(err);
            settle({ outcome: 'failed', reason: reasonForStatus(status, body) });
          },
        });
        const abort = () => {
          void up.abort(false);
          settle({ outcome: 'aborted' });
        };
        if (signal.aborted) return abort();
        signal.addEventListener('abort', abort, { once: true });
        up.findPreviousUploads()
          .then((previous) => {
            const last = previous.at(-1);
            if (last) up.resumeFromPreviousUpload(last);
          })
          .catch(() => undefined)
          .finally(() => {
            if (!settled) up.start();
          });
      });
    },
  };
}

/** resultOutcome reads the server's verdict on one upload: a Part 10 file or a tar bundle. */
export function resultOutcome(r: UploadResult, item: Pick<QueueItem, 'path'>): SendResult {
  const files = r.files ?? [];
  if (files.length === 1 && (files[0]!.name === item.path || r.stored + r.alreadyStored + r.conflicts + r.failed === 1)) {
    const f = files[0]!;
    const why: Reason | null = reasonForResult(f);
    if (why) return { outcome: 'failed', reason: why };
    return { outcome: f.outcome === 'already-stored' ? 'duplicate' : 'stored', studyUID: f.studyInstanceUID };
  }
  // A tar bundle: stored when any member is, with the counts; failed when none is.
  const bundle = { stored: r.stored, alreadyStored: r.alreadyStored, failed: r.failed + r.conflicts };
  const firstStudy = files.find((f) => f.studyInstanceUID)?.studyInstanceUID;
  if (r.stored > 0) return { outcome: 'stored', studyUID: firstStudy, bundle };
  if (r.alreadyStored > 0) return { outcome: 'duplicate', studyUID: firstStudy, bundle };
  const first = files.find((f) => f.outcome !== 'stored');
  return { outcome: 'failed', reason: (first && reasonForResult(first)) ?? { key: 'upload.reason.refusedStatus', params: { status: 422 } } };
}

/** maxUploadSize asks the server's tus discovery for its largest upload (Tus-Max-Size). */
export async function maxUploadSize(endpoint = UPLOAD_ENDPOINT): Promise<number | undefined> {
  try {
    const res = await fetch(endpoint, { method: 'OPTIONS', credentials: 'same-origin' });
    const v = Number(res.headers.get('Tus-Max-Size'));
    return Number.isFinite(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}
