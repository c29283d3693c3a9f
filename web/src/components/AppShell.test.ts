import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia } from 'pinia';
import { createMemoryHistory } from 'vue-router';
import { i18n } from '@/i18n';
import { createAppRouter } from '@/router';
import App from '@/App.vue';

// The shell's admin parts: the tabs in order (a tab only once its screen is routed) and the
// audit alarm, which verifies for admins only.
function json(body: unknown): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
}

const head = { seq: 9, hash: 'ab'.repeat(32) };

async function shell(roles: string[], holds: boolean) {
  const asked: string[] = [];
  vi.stubGlobal('fetch', async (req: Request) => {
    const path = new URL(req.url).pathname;
    asked.push(path);
    if (path === '/api/session') {
      return json({ user: { id: 1, username: 'u', displayName: 'U', roles, institutionId: 0, method: 'session', mustChangePassword: false }, csrfToken: 'c' });
    }
    if (path === '/api/audit/verify') return json(holds ? { holds, entries: 9, headHash: head.hash, head } : { holds, entries: 9, headHash: head.hash, head, brokenAt: 4, reason: 'x' });
    return json(path === '/api/dashboard' ? null : []);
  });
  const pinia = createPinia();
  const router = createAppRouter(pinia, createMemoryHistory());
  await router.push(roles.includes('admin') ? '/admin/people' : '/password');
  await router.isReady();
  const wrapper = mount(App, { global: { plugins: [pinia, router, i18n] }, attachTo: document.body });
  await flushPromises();
  await vi.dynamicImportSettled();
  await flushPromises();
  return { wrapper, asked };
}

afterEach(() => {
  vi.unstubAllGlobals();
  document.body.innerHTML = '';
});

describe('AppShell for admins', () => {
  it('shows the admin tabs in order', async () => {
    const { wrapper } = await shell(['admin'], true);
    expect(wrapper.findAll('nav.tabs a').map((a) => a.text())).toEqual(['概览', '机构与工作站', '人员', '会诊记录', '审计']);
    wrapper.unmount();
  });

  it('raises the red alarm with the first bad entry when the chain is broken', async () => {
    const { wrapper, asked } = await shell(['admin'], false);
    expect(asked).toContain('/api/audit/verify');
    const alarm = wrapper.find('[data-testid="audit-alarm"]');
    expect(alarm.exists()).toBe(true);
    expect(alarm.text()).toContain('审计链校验失败：第 4 条');
    wrapper.unmount();
  });

  it('shows no alarm while the chain holds', async () => {
    const { wrapper } = await shell(['admin'], true);
    expect(wrapper.find('[data-testid="audit-alarm"]').exists()).toBe(false);
    wrapper.unmount();
  });

  it('never verifies for a doctor', async () => {
    const { wrapper, asked } = await shell(['doctor'], false);
    expect(asked).not.toContain('/api/audit/verify');
    expect(wrapper.find('[data-testid="audit-alarm"]').exists()).toBe(false);
    expect(wrapper.findAll('nav.tabs a').map((a) => a.text())).toEqual(['工作列表']);
    wrapper.unmount();
  });
});
