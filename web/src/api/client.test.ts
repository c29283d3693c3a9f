import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApi, setCSRFToken, setUnauthorizedHandler, CSRF_HEADER } from './client';
import { ApiError } from './errors';

function answer(status: number, body?: unknown, headers: Record<string, string> = {}): Response {
  const type = status >= 400 ? 'application/problem+json' : 'application/json';
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': type, ...headers } });
}

function problem(status: number, detail: string) {
  return { type: 'about:blank', title: 'x', status, detail };
}

afterEach(() => {
  setCSRFToken('');
  setUnauthorizedHandler(null);
});

describe('api client', () => {
  it('sends the CSRF token on state-changing requests only, with same-origin credentials', async () => {
    const seen: Request[] = [];
    const api = createApi(async (req) => {
      seen.push(req as Request);
      return (req as Request).method === 'GET' ? answer(200, { user: { username: 'a' } }) : answer(204);
    });
    setCSRFToken('tok-123');
    await api.GET('/api/session');
    await api.POST('/api/logout');
    expect(seen[0]?.headers.get(CSRF_HEADER)).toBeNull();
    expect(seen[1]?.headers.get(CSRF_HEADER)).toBe('tok-123');
    expect(seen[1]?.credentials).toBe('same-origin');
  });

  it('turns a problem document into an ApiError with a message key', async () => {
    const api = createApi(async () => answer(409, problem(409, 'cannot go from "live" to "cancelled"')));
    const err = await api.POST('/api/consultations/{id}/cancel', { params: { path: { id: 1 } }, body: { reason: 'x' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(409);
    expect(e.problem.detail).toContain('cannot go from');
    expect(e.messageKey).toBe('errors.conflict');
  });

  it.each([
    [403, 'the account is locked; an administrator can unlock it', 'errors.locked'],
    [403, 'not allowed: the password must be changed first', 'errors.passwordChange'],
    [403, 'not allowed for your role', 'errors.forbidden'],
    [404, 'not found', 'errors.notFound'],
    [422, 'invalid: a password has 8 to 256 characters', 'errors.invalid'],
    [500, 'internal error', 'errors.server'],
    [503, '', 'errors.unavailable'],
  ])('maps %i "%s" to %s', async (status, detail, key) => {
    const api = createApi(async () => answer(status, problem(status, detail)));
    const err = (await api.GET('/api/session').catch((e: unknown) => e)) as ApiError;
    expect(err.messageKey).toBe(key);
  });

  it('reads Retry-After of a 429 into minutes', async () => {
    const api = createApi(async () => answer(429, problem(429, 'too many'), { 'Retry-After': '1800' }));
    const err = (await api.POST('/api/login', { body: { username: 'a', password: 'b' } }).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBe(1800);
    expect(err.messageKey).toBe('errors.tooManyRequests');
    expect(err.messageParams).toEqual({ minutes: 30 });
    const soon = createApi(async () => answer(429, problem(429, 'too many'), { 'Retry-After': '3' }));
    const err2 = (await soon.POST('/api/login', { body: { username: 'a', password: 'b' } }).catch((e: unknown) => e)) as ApiError;
    expect(err2.messageKey).toBe('errors.tooManyRequestsSoon');
  });

  it('makes a problem of an answer that is not one (a proxy error page)', async () => {
    const api = createApi(async () => new Response('<html>Bad Gateway</html>', { status: 502, headers: { 'Content-Type': 'text/html' } }));
    const err = (await api.GET('/api/session').catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(502);
    expect(err.messageKey).toBe('errors.unavailable');
  });

  it('reports a network failure as status 0', async () => {
    const api = createApi(async () => {
      throw new TypeError('Failed to fetch');
    });
    const err = (await api.GET('/api/session').catch((e: unknown) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(0);
    expect(err.messageKey).toBe('errors.network');
  });

  it('calls the unauthorized handler on a 401 of an ordinary request, not of sign-in', async () => {
    const onUnauthorized = vi.fn();
    setUnauthorizedHandler(onUnauthorized);
    const api = createApi(async () => answer(401, problem(401, 'authentication required')));
    await expect(api.POST('/api/login', { body: { username: 'a', password: 'b' } })).rejects.toBeInstanceOf(ApiError);
    await expect(api.GET('/api/session')).rejects.toBeInstanceOf(ApiError);
    expect(onUnauthorized).not.toHaveBeenCalled();
    await expect(api.GET('/api/consultations')).rejects.toBeInstanceOf(ApiError);
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });
});
