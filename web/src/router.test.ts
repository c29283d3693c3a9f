import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { createMemoryHistory } from 'vue-router';
import { createAppRouter, routes } from './router';

// Every screen by role: the routes a role may open, and where the others send it (the
// browser's side of the server's route x role test; the server refuses the APIs as well).
function session(roles: string[]): Response {
  const user = { id: 1, username: 'u', displayName: 'U', roles, institutionId: 0, method: 'session', mustChangePassword: false };
  return new Response(JSON.stringify({ user, csrfToken: 'c' }), { status: 200, headers: { 'Content-Type': 'application/json' } });
}

const screens = routes.flatMap((r) => [r, ...(r.children ?? [])]).filter((r) => r.name && r.meta?.role && !r.redirect);

async function land(pinia: Pinia, path: string): Promise<string> {
  const router = createAppRouter(pinia, createMemoryHistory());
  await router.push(path);
  await router.isReady();
  return String(router.currentRoute.value.name);
}

beforeEach(() => {
  setActivePinia(createPinia());
  vi.unstubAllGlobals();
});

describe('routes by role', () => {
  it('has the screens of every role', () => {
    expect(screens.map((r) => r.name)).toEqual(expect.arrayContaining(['clinic-upload', 'doctor-worklist', 'admin-dashboard', 'admin-institutions', 'admin-people', 'admin-audit', 'admin-session-logs', 'admin-session-log']));
  });
  for (const role of ['clinic', 'doctor', 'admin']) {
    it(`${role}: its own screens open, the others' send it home`, async () => {
      vi.stubGlobal('fetch', async (req: Request) => (new URL(req.url).pathname === '/api/session' ? session([role]) : new Response('[]', { status: 200, headers: { 'Content-Type': 'application/json' } })));
      const home = { clinic: 'clinic-upload', doctor: 'doctor-worklist', admin: 'admin-dashboard' }[role];
      for (const r of screens) {
        const path = String(r.path).replace(':id(\\d+)', '7').replace(/^(?!\/)/, '/');
        const pinia = createPinia();
        const got = await land(pinia, path);
        const want = r.meta?.role === role ? r.name : home;
        expect(`${path} -> ${got}`).toBe(`${path} -> ${String(want)}`);
      }
    });
  }

  it('admin: lands on the dashboard', async () => {
    vi.stubGlobal('fetch', async (req: Request) => (new URL(req.url).pathname === '/api/session' ? session(['admin']) : new Response('[]', { status: 200, headers: { 'Content-Type': 'application/json' } })));
    expect(await land(createPinia(), '/')).toBe('admin-dashboard');
    expect(await land(createPinia(), '/admin')).toBe('admin-dashboard');
  });
});
