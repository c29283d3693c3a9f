import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';
import { ApiError, NETWORK_ERROR, problemFrom, retryAfterOf } from './errors';

/** The header the API wants the session's CSRF token in on state-changing requests. */
export const CSRF_HEADER = 'X-CSRF-Token';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

// Routes whose 401 is an answer for the form, not an expired session.
const OWN_401 = new Set(['/api/login', '/api/session', '/api/logout']);

let csrfToken = '';
let onUnauthorized: (() => void) | null = null;

/** setCSRFToken keeps the session's token (from POST /api/login or GET /api/session). */
export function setCSRFToken(token: string): void {
  csrfToken = token;
}

/**
 * setUnauthorizedHandler: what to do when a request answers 401 because the session ended
 * (idle timeout, signed out elsewhere): the router sends the user to sign in and back after.
 */
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

const middleware: Middleware = {
  onRequest({ request }) {
    if (!SAFE_METHODS.has(request.method) && csrfToken) {
      request.headers.set(CSRF_HEADER, csrfToken);
    }
    return request;
  },
  async onResponse({ request, response }) {
    if (response.ok) return response;
    const problem = await problemFrom(response);
    if (response.status === 401 && !OWN_401.has(new URL(request.url).pathname)) {
      onUnauthorized?.();
    }
    throw new ApiError(problem, retryAfterOf(response));
  },
  onError({ error }) {
    if (error instanceof ApiError) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return new ApiError({ type: 'about:blank', title: 'Network error', status: NETWORK_ERROR, detail });
  },
};

/**
 * createApi makes a typed client of the REST API (docs/openapi.yaml): same-origin cookies,
 * the CSRF header on unsafe methods, and every non-2xx answer thrown as an ApiError. Tests pass
 * their own fetch.
 */
export function createApi(fetchImpl?: typeof fetch) {
  const client = createClient<paths>({
    baseUrl: typeof window === 'undefined' ? 'http://localhost' : window.location.origin,
    credentials: 'same-origin',
    // Looked up per request, so that tests can stub the global fetch after import.
    fetch: (req: Request) => (fetchImpl ?? globalThis.fetch)(req),
  });
  client.use(middleware);
  return client;
}

/** api is the app's one client: `const { data } = await api.GET('/api/consultations')`. */
export const api = createApi();
