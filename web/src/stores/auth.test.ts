import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createPinia, setActivePinia } from 'pinia';
import { useAuthStore } from './auth';
import { CSRF_HEADER } from '@/api/client';
import { ApiError } from '@/api/errors';

type Handler = (req: Request) => Response | Promise<Response>;

function json(status: number, body?: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json' },
  });
}

const clinicUser = {
  id: 7, username: 'lan.xiuying', displayName: '蓝秀英', roles: ['clinic'], institutionId: 3, institutionCode: 'longshan',
  method: 'session', mustChangePassword: false,
};
const institution = { id: 3, code: 'longshan', name: '龙山村卫生室', kind: 'clinic', createdAt: '2026-01-01T00:00:00Z' };

// A fake server: routes by "METHOD /path", records every request.
function serve(routes: Record<string, Handler>): Request[] {
  const seen: Request[] = [];
  vi.stubGlobal('fetch', async (req: Request) => {
    seen.push(req);
    const h = routes[`${req.method} ${new URL(req.url).pathname}`];
    return h ? h(req) : json(404, { type: 'about:blank', title: 'Not Found', status: 404, detail: 'not found' });
  });
  return seen;
}

beforeEach(() => {
  setActivePinia(createPinia());
  vi.unstubAllGlobals();
});

describe('auth store', () => {
  it('knows nobody before sign-in (401 from /api/session)', async () => {
    serve({ 'GET /api/session': () => json(401, { type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'authentication required' }) });
    const auth = useAuthStore();
    await auth.load();
    expect(auth.loaded).toBe(true);
    expect(auth.signedIn).toBe(false);
  });

  it('signs in, keeps the CSRF token for later requests, loads the institution, picks the home by role', async () => {
    const seen = serve({
      'POST /api/login': () => json(200, { user: clinicUser, csrfToken: 'csrf-1' }),
      'GET /api/institutions/3': () => json(200, institution),
      'POST /api/logout': () => json(204),
    });
    const auth = useAuthStore();
    await auth.signIn('lan.xiuying', 'secret-password');
    expect(auth.user?.displayName).toBe('蓝秀英');
    expect(auth.homeRoute).toBe('clinic-upload');
    await vi.waitFor(() => expect(auth.institution?.name).toBe('龙山村卫生室'));
    await auth.signOut();
    const logout = seen.find((r) => r.url.endsWith('/api/logout'));
    expect(logout?.headers.get(CSRF_HEADER)).toBe('csrf-1');
    expect(auth.signedIn).toBe(false);
  });

  it('sends a doctor to the worklist and someone with no known role nowhere', async () => {
    serve({
      'POST /api/login': (req) => req.clone().json().then((b: { username: string }) =>
        json(200, { user: { ...clinicUser, roles: b.username === 'doc' ? ['clinic', 'doctor'] : [] }, csrfToken: 'c' })),
    });
    const auth = useAuthStore();
    await auth.signIn('doc', 'secret-password');
    expect(auth.homeRoute).toBe('doctor-worklist');
    await auth.signIn('nobody', 'secret-password');
    expect(auth.homeRoute).toBe('no-role');
  });

  it('holds a temporary-password user until the password is changed', async () => {
    const seen = serve({
      'POST /api/login': () => json(200, { user: { ...clinicUser, mustChangePassword: true }, csrfToken: 'csrf-2' }),
      'POST /api/session/password': () => json(204),
      'GET /api/institutions/3': () => json(200, institution),
    });
    const auth = useAuthStore();
    await auth.signIn('lan.xiuying', 'temporary-pw');
    expect(auth.mustChangePassword).toBe(true);
    // No institution look-up while the server refuses everything but the password change.
    expect(seen.some((r) => r.url.includes('/api/institutions'))).toBe(false);
    await auth.changePassword('temporary-pw', 'my-own-password');
    expect(auth.mustChangePassword).toBe(false);
    const change = seen.find((r) => r.url.endsWith('/api/session/password'));
    expect(change?.headers.get(CSRF_HEADER)).toBe('csrf-2');
    expect(await change?.json()).toEqual({ currentPassword: 'temporary-pw', newPassword: 'my-own-password' });
  });

  it('rejects a wrong password with the server status', async () => {
    serve({ 'POST /api/login': () => json(401, { type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'wrong username or password' }) });
    const auth = useAuthStore();
    const err = await auth.signIn('a', 'b').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect(auth.signedIn).toBe(false);
  });

  it('signs out cleanly when the session had already ended', async () => {
    serve({
      'POST /api/login': () => json(200, { user: clinicUser, csrfToken: 'c' }),
      'POST /api/logout': () => json(401, { type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'authentication required' }),
    });
    const auth = useAuthStore();
    await auth.signIn('a', 'secret-password');
    await auth.signOut();
    expect(auth.signedIn).toBe(false);
  });
});
