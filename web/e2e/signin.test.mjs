// Signing in, out, the temporary-password change and the app shell, in real headless Chromium
// against bin/sanping with the built app embedded. Screenshots: web/test-output/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, PHONE, DESKTOP } from './server.mjs';

const PW = 'clinic-' + randomUUID().slice(0, 8);
const TEMP_PW = 'temporary-' + randomUUID().slice(0, 6);
const NEW_PW = 'my-own-' + randomUUID().slice(0, 8);

let server;
let browser;
let page;
const cspViolations = [];
const pageErrors = [];

before(async () => {
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
    // An account an admin reset: the password is temporary until its owner changes it.
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '黄海燕', 'huang.haiyan'], PW + '\n');
    cli(['user', 'passwd', '-temporary', 'huang.haiyan'], TEMP_PW + '\n');
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '农志强', 'nong.zhiqiang'], PW + '\n');
    cli(['user', 'lock', 'nong.zhiqiang']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '覃丽', 'qin.li'], PW + '\n');
  });
  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
}, { timeout: 120_000 });

after(async () => {
  await browser?.close();
  await server?.stop();
});

const T = { timeout: 30_000 };
const skip = () => !page && 'no Chromium at /usr/bin/chromium';

async function signIn(username, password, lang = 'zh') {
  const L = lang === 'zh' ? { user: '用户名', pw: '密码', go: '登录' } : { user: 'Username', pw: 'Password', go: 'Sign in' };
  await page.getByRole('textbox', { name: L.user }).fill(username);
  await page.getByLabel(L.pw, { exact: true }).fill(password);
  await page.getByRole('button', { name: L.go, exact: true }).click();
}

test('a clinic user signs in in Chinese and lands on the clinic home', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.goto(server.base + '/');
  await page.waitForURL(/\/sign-in/);
  await page.getByRole('heading', { name: '登录' }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
  await shoot(page, 'sign-in-phone', PHONE);
  await shoot(page, 'sign-in-desktop', DESKTOP);

  await signIn('lan.xiuying', PW);
  await page.waitForURL(/\/clinic\/upload$/);
  await page.getByRole('heading', { name: '上传影像' }).waitFor();
  const nav = page.getByRole('navigation', { name: '主导航' });
  for (const name of ['上传', '检查', '会诊申请']) await nav.getByRole('link', { name }).waitFor();
  assert.equal(await nav.getByRole('link', { name: '工作列表' }).count(), 0, 'a clinic user sees no doctor screens');
  await page.getByText('蓝秀英').waitFor();
  await page.getByText('龙山村卫生室').waitFor();
  await shoot(page, 'home-clinic-phone', PHONE);
  await shoot(page, 'home-clinic-desktop', DESKTOP);

  await nav.getByRole('link', { name: '检查' }).click();
  await page.getByRole('heading', { name: '本机构的检查' }).waitFor();
  // A doctor's screen is not for this user: back home.
  await page.goto(server.base + '/doctor/worklist');
  await page.waitForURL(/\/clinic\/upload$/);
});

test('English is one click away, and stays after a reload of a deep link', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: 'English' }).click();
  await page.getByRole('heading', { name: 'Upload scans' }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
  await page.getByRole('navigation', { name: 'Main navigation' }).getByRole('link', { name: 'Requests' }).click();
  await page.waitForURL(/\/clinic\/requests$/);
  await page.reload();
  await page.getByRole('heading', { name: 'Consultation requests' }).waitFor();
  assert.match(await page.title(), /Consultation requests/);
  await page.getByRole('button', { name: '中文' }).click();
  await page.getByRole('heading', { name: '会诊申请' }).waitFor();
});

test('signing out, then a deep link asks to sign in and returns there', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/sign-in/);
  await page.getByText('您已退出登录。').waitFor();
  await page.goto(server.base + '/clinic/studies');
  await page.waitForURL(/\/sign-in\?next=/);
  await signIn('lan.xiuying', PW);
  await page.waitForURL(/\/clinic\/studies$/);
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/sign-in/);
});

test('a wrong password, a locked account and too many failures each say so', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.goto(server.base + '/sign-in');
  await signIn('lan.xiuying', 'not-the-password');
  await page.getByRole('alert').filter({ hasText: '用户名或密码错误。' }).waitFor();
  assert.match(page.url(), /\/sign-in/);

  await signIn('nong.zhiqiang', PW);
  await page.getByRole('alert').filter({ hasText: '账户已被管理员锁定' }).waitFor();

  for (let i = 0; i < 5; i++) {
    await signIn('qin.li', `wrong-${i}-password`);
    await page.getByRole('alert').waitFor();
  }
  await signIn('qin.li', PW);
  await page.getByRole('alert').filter({ hasText: '尝试次数过多，请 30 分钟后再试。' }).waitFor();
  await page.getByRole('button', { name: 'English' }).click();
  await signIn('qin.li', PW, 'en');
  await page.getByRole('alert').filter({ hasText: 'Too many attempts. Try again in 30 minutes.' }).waitFor();
  await page.getByRole('button', { name: '中文' }).click();
});

test('a temporary password must be changed before anything else', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.goto(server.base + '/clinic/requests');
  await page.waitForURL(/\/sign-in/);
  await signIn('huang.haiyan', TEMP_PW);
  await page.waitForURL(/\/password/);
  await page.getByText('这是管理员设置的临时密码').waitFor();
  assert.equal(await page.getByRole('navigation').count(), 0, 'no screens before the password is changed');
  // Elsewhere is not reachable yet.
  await page.goto(server.base + '/clinic/upload');
  await page.waitForURL(/\/password/);
  await shoot(page, 'password-forced-phone', PHONE);
  await shoot(page, 'password-forced-desktop', DESKTOP);

  await page.getByLabel('当前密码', { exact: true }).fill(TEMP_PW);
  await page.getByLabel('新密码', { exact: true }).fill(NEW_PW);
  await page.getByLabel('再次输入新密码', { exact: true }).fill(NEW_PW + 'x');
  await page.getByRole('button', { name: '保存新密码' }).click();
  await page.getByRole('alert').filter({ hasText: '两次输入的新密码不一致。' }).waitFor();
  await page.getByLabel('再次输入新密码', { exact: true }).fill(NEW_PW);
  await page.getByRole('button', { name: '保存新密码' }).click();
  await page.waitForURL(/\/clinic\/upload$/);
  await page.getByRole('heading', { name: '上传影像' }).waitFor();

  // The new password is the one that works now.
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/sign-in/);
  await signIn('huang.haiyan', NEW_PW);
  await page.waitForURL(/\/clinic\/upload$/);
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/sign-in/);
});

test('a doctor lands on the worklist', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn('wei.dongping', PW);
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.getByRole('heading', { name: '会诊工作列表' }).waitFor();
  await page.getByRole('navigation', { name: '主导航' }).getByRole('link', { name: '工作列表' }).waitFor();
  await page.getByText('大化县人民医院').waitFor();
  await shoot(page, 'home-doctor-phone', PHONE);
  await shoot(page, 'home-doctor-desktop', DESKTOP);
});

test('a session that ends sends the user to sign in and back', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('link', { name: '修改密码' }).click();
  await page.waitForURL(/\/password$/);
  // The session cookie goes (as when the server ends an idle session): the next request the
  // app makes answers 401.
  await page.context().clearCookies();
  await page.getByLabel('当前密码', { exact: true }).fill(PW);
  await page.getByLabel('新密码', { exact: true }).fill(NEW_PW);
  await page.getByLabel('再次输入新密码', { exact: true }).fill(NEW_PW);
  await page.getByRole('button', { name: '保存新密码' }).click();
  await page.waitForURL(/\/sign-in\?next=(%2F|\/)password/);
  await page.getByText('登录已过期，请重新登录。').waitFor();
  await signIn('wei.dongping', PW);
  await page.waitForURL(/\/password$/);
  await page.getByRole('heading', { name: '修改密码' }).waitFor();
});

test('every control on the sign-in page is reached by Tab and has a name', T, async (t) => {
  if (skip()) return t.skip(skip());
  const signOut = page.getByRole('button', { name: '退出登录' });
  if (await signOut.count()) await signOut.click();
  else await page.goto(server.base + '/sign-in');
  await page.waitForURL(/\/sign-in/);
  await page.setViewportSize(DESKTOP);
  await page.locator('body').focus();
  const reached = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return '';
      const label = el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent?.trim() : '';
      return `${el.tagName.toLowerCase()}:${el.getAttribute('aria-label') || label || el.textContent?.trim() || ''}`;
    }));
  }
  for (const want of ['button:English', 'input:用户名', 'input:密码', 'button:登录']) {
    assert.ok(reached.includes(want), `Tab does not reach ${want}: ${reached.join(' | ')}`);
  }
});

test('an unknown address shows a not-found page, not a blank one', T, async (t) => {
  if (skip()) return t.skip(skip());
  const res = await page.goto(server.base + '/no/such/screen');
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /script-src 'self' 'wasm-unsafe-eval';/);
  await page.getByRole('heading', { name: '页面不存在' }).waitFor();
  await page.getByRole('link', { name: '返回首页' }).waitFor();
});

test('nothing broke the Content-Security-Policy and no script error reached the page', (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});
