import type { components } from './schema';

export type Problem = components['schemas']['Problem'];

/**
 * ApiError is an answer of the API that is not a success: the RFC 9457 problem document the
 * server sent (or one made up for a network failure or a non-JSON answer), with the i18n key
 * of the message a user should read.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  /** Seconds the server asks to wait (Retry-After), when it said. */
  readonly retryAfter: number | undefined;
  /** i18n key of the user-facing message (errors.*) and its parameters. */
  readonly messageKey: string;
  readonly messageParams: Record<string, number | string>;

  constructor(problem: Problem, retryAfter?: number) {
    super(problem.detail || problem.title);
    this.name = 'ApiError';
    this.status = problem.status;
    this.problem = problem;
    this.retryAfter = retryAfter;
    this.messageKey = messageKeyFor(problem);
    this.messageParams = {};
    if (problem.status === 429) {
      if (retryAfter !== undefined && retryAfter >= 60) {
        this.messageParams = { minutes: Math.ceil(retryAfter / 60) };
      } else {
        this.messageKey = 'errors.tooManyRequestsSoon';
      }
    }
  }

  /** The server asks for a password change before anything else (403 until it is done). */
  get passwordChangeRequired(): boolean {
    return this.status === 403 && /password must be changed/.test(this.problem.detail);
  }
}

/** Status 0: the request never got an answer (offline, DNS, connection cut). */
export const NETWORK_ERROR = 0;

/**
 * messageKeyFor maps a problem to the message a user reads. The server's detail is English and
 * meant for logs; users read the catalog's words for the status (and the few details that
 * change what they should do).
 */
export function messageKeyFor(p: Problem): string {
  switch (p.status) {
    case NETWORK_ERROR:
      return 'errors.network';
    case 400:
      return 'errors.badRequest';
    case 401:
      return 'errors.unauthorized';
    case 403:
      if (/locked/.test(p.detail)) return 'errors.locked';
      if (/password must be changed/.test(p.detail)) return 'errors.passwordChange';
      if (/CSRF/.test(p.detail)) return 'errors.csrf';
      return 'errors.forbidden';
    case 404:
      return 'errors.notFound';
    case 409:
      return 'errors.conflict';
    case 413:
      return 'errors.tooLarge';
    case 415:
      return 'errors.unsupportedType';
    case 422:
      return 'errors.invalid';
    case 429:
      return 'errors.tooManyRequests';
    case 502:
    case 503:
    case 504:
      return 'errors.unavailable';
    default:
      return p.status >= 500 ? 'errors.server' : 'errors.unknown';
  }
}

/** retryAfterOf reads a Retry-After header given in seconds (the server never sends a date). */
export function retryAfterOf(res: Response): number | undefined {
  const v = res.headers.get('Retry-After');
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

/** problemFrom reads a failed answer's problem document, or makes one when it has none. */
export async function problemFrom(res: Response): Promise<Problem> {
  const type = res.headers.get('Content-Type') ?? '';
  if (type.includes('json')) {
    try {
      const body = (await res.clone().json()) as Partial<Problem>;
      return {
        type: body.type ?? 'about:blank',
        title: body.title ?? res.statusText,
        status: typeof body.status === 'number' ? body.status : res.status,
        detail: body.detail ?? '',
      };
    } catch {
      // fall through: not JSON after all
    }
  }
  return { type: 'about:blank', title: res.statusText, status: res.status, detail: '' };
}
