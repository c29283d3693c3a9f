// The admin console's network screens in headless Chromium against bin/sanping: the county's
// administrator builds the institution tree, gives a village clinic a station token (secret
// and login line shown once; the token works until revoked), adds a doctor with a temporary
// password (who must change it at sign-in), locks and unlocks them; a doctor gets no admin
// screen and no admin API. Screenshots: web/test-output/admin-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, DESKTOP, PHONE, apiSession } from './server.mjs';

const PW = 'admin-' + randomUUID().slice(0, 8);
let server;
let browser;
let page;
const pageErrors = [];

before(async () => {
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['user', 'add', '-roles', 'admin', '-name', '陆建华', 'lu.jianhua'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', 'wei.dongping'], PW + '\n');
  });
  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
}, { timeout: 120_000 });

after(async () => {
  await browser?.close();
  await server?.stop();
});

const T = { timeout: 120_000 };
const skip = () => !page && 'no Chromium at /usr/bin/chromium';

async function signIn(p, username, password) {
  await p.goto(server.base + '/sign-in');
  await p.getByRole('textbox', { name: '用户名' }).fill(username);
  await p.getByLabel('密码', { exact: true }).fill(password);
  await p.getByRole('button', { name: '登录', exact: true }).click();
}

/** pick chooses an option of an Element Plus select (a listbox in a popper, not a <select>). */
async function pick(p, dialog, label, option) {
  const item = dialog.locator('.el-form-item').filter({ has: p.locator('.el-form-item__label', { hasText: new RegExp(`^${label}$`) }) });
  await item.locator('.el-select__wrapper').click();
  await p.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: option }).first().click();
}

test('the admin adds a village clinic under the township and gives it a station', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn(page, 'lu.jianhua', PW);
  await page.waitForURL(/\/admin\/dashboard$/);
  await page.getByRole('link', { name: '机构与工作站' }).click();
  await page.waitForURL(/\/admin\/institutions$/);
  await page.getByRole('heading', { name: '机构与工作站' }).waitFor();
  const tree = page.getByRole('navigation', { name: '机构树' });
  await tree.getByText('都阳镇卫生院').click();
  await page.getByRole('button', { name: '新增机构' }).click();
  const add = page.getByRole('dialog', { name: '新增机构' });
  await pick(page, add, '类型', '村卫生室');
  await pick(page, add, '上级机构', '都阳镇卫生院');
  await add.getByLabel('编码', { exact: true }).fill('longshan');
  await add.getByLabel('名称', { exact: true }).fill('龙山村卫生室');
  await add.getByRole('button', { name: '保存' }).click();
  await add.waitFor({ state: 'hidden' });
  // The tree nests it under the township; it is selected.
  await tree.locator('[data-code="longshan"]').waitFor();
  await page.getByRole('article', { name: '龙山村卫生室' }).waitFor();
  const api = await apiSession(server.base, 'lu.jianhua', PW);
  const list = (await api('GET', '/api/institutions')).body;
  const clinic = list.find((i) => i.code === 'longshan');
  assert.equal(clinic.parentId, list.find((i) => i.code === 'duyang').id);
  assert.equal(clinic.kind, 'clinic');

  // A station token: the secret and the station's login line, shown once.
  await page.getByRole('button', { name: '新增工作站令牌' }).click();
  const tok = page.getByRole('dialog', { name: '新增工作站令牌' });
  await tok.getByLabel('名称', { exact: true }).fill('龙山村卫生室-DR');
  await tok.getByRole('button', { name: '创建' }).click();
  const line = await tok.getByTestId('login-line').textContent();
  assert.match(line, new RegExp(`^sanping-station login -server ${server.base.replace(/[.:/]/g, '\\$&')} -token spt_\\S+$`));
  await shoot(page, 'admin-station-token', DESKTOP);
  const secret = line.split(' -token ')[1];
  const asStation = () => fetch(`${server.base}/api/session`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal((await asStation()).status, 200, 'the new token works');
  await page.keyboard.press('Escape');
  await tok.waitFor({ state: 'hidden' });
  let row = page.getByRole('row', { name: /龙山村卫生室-DR/ });
  await row.getByText('工作站尚未报告').waitFor();

  // The station reports its queue and a failed upload, as sanping-station does every minute.
  const report = {
    queue: { bundles: 2, files: 37, bytes: 31_500_000 },
    lastSuccess: new Date(Date.now() - 3 * 3600_000).toISOString(),
    lastError: { time: new Date(Date.now() - 120_000).toISOString(), message: 'dial tcp 10.0.0.2:443: i/o timeout' },
    spool: { waitingImages: 3, waitingBytes: 1_200_000, diskFree: 8e9, refusing: false },
  };
  const posted = await fetch(`${server.base}/api/station/status`, { method: 'POST', headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' }, body: JSON.stringify(report) });
  assert.equal(posted.status, 204, 'the station report is taken');
  const asAdmin = await api('POST', '/api/station/status', report);
  assert.equal(asAdmin.status, 403, "an admin's session cannot post a station's report");
  await page.reload();
  await tree.locator('[data-code="longshan"]').click();
  row = page.getByRole('row', { name: /龙山村卫生室-DR/ });
  const queue = row.getByTestId('station-queue');
  await queue.getByText('2 个数据包，37 个文件，31.5 MB').waitFor();
  await queue.locator('.el-tag--danger', { hasText: '上传出错' }).waitFor();
  await shoot(page, 'admin-station-queue', DESKTOP);

  await row.getByRole('button', { name: '吊销' }).click();
  await page.locator('.el-popconfirm:visible').getByRole('button', { name: /确定|OK|Yes/ }).click();
  await row.getByText('已吊销').first().waitFor();
  assert.equal((await asStation()).status, 401, 'a revoked token is refused');
  await shoot(page, 'admin-institutions', DESKTOP);
  await shoot(page, 'admin-institutions-phone', PHONE);
  await page.setViewportSize(DESKTOP);
});

test('the admin adds a doctor with a temporary password, then locks and unlocks them', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('link', { name: '人员' }).click();
  await page.waitForURL(/\/admin\/people$/);
  await page.getByRole('button', { name: '新增人员' }).click();
  const dlg = page.getByRole('dialog', { name: '新增人员' });
  await dlg.getByLabel('用户名', { exact: true }).fill('meng.zhiqiang');
  await dlg.getByLabel('姓名', { exact: true }).fill('蒙志强');
  await dlg.getByText('村医/基层').click(); // off
  await dlg.getByText('医生', { exact: true }).click(); // on
  await pick(page, dlg, '机构', '都阳镇卫生院');
  await dlg.getByLabel('职称', { exact: true }).fill('主治医师');
  await dlg.getByLabel('专业', { exact: true }).fill('全科');
  await dlg.getByRole('button', { name: '保存' }).click();
  await dlg.waitFor({ state: 'hidden' });
  const temp = await page.getByTestId('temporary-password').textContent();
  assert.match(temp, /^[A-Za-z2-9]{12}$/);
  const row = page.getByRole('row', { name: /meng\.zhiqiang/ });
  await row.getByText('待改密码').first().waitFor();
  await row.getByText('都阳镇卫生院').first().waitFor();
  await shoot(page, 'admin-people', DESKTOP);

  // The doctor signs in with it and must choose their own first.
  const other = await browser.context.browser()?.newContext?.() ?? null;
  const b2 = other ? null : await launchBrowser();
  const p2 = other ? await other.newPage() : await b2.context.newPage();
  try {
    await signIn(p2, 'meng.zhiqiang', temp);
    await p2.waitForURL(/\/password/);
  } finally {
    await (other ? other.close() : b2.close());
  }

  // Locked: the sign-in says so; unlocked: it works again.
  await row.getByRole('button', { name: '锁定' }).click();
  await page.locator('.el-popconfirm:visible').getByRole('button', { name: /确定|OK|Yes/ }).click();
  await row.getByText('已锁定').first().waitFor();
  const login = (pw) => fetch(`${server.base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'meng.zhiqiang', password: pw }) });
  assert.notEqual((await login(temp)).status, 200, 'a locked account cannot sign in');
  await row.getByRole('button', { name: '解锁' }).click();
  await row.getByText('待改密码').first().waitFor();
  assert.equal((await login(temp)).status, 200, 'unlocked, the temporary password works again');
});

test('the admin sees who is signed in now and signs a doctor out', T, async (t) => {
  if (skip()) return t.skip(skip());
  const doctor = await apiSession(server.base, 'wei.dongping', PW);
  assert.equal((await doctor('GET', '/api/sessions')).status, 403, 'a doctor cannot list sessions');
  await page.goto(server.base + '/admin/people');
  const online = page.getByRole('region', { name: '现在在线' });
  await online.getByRole('button', { name: '刷新' }).click();
  const row = online.getByRole('row', { name: /韦东平/ });
  await row.waitFor();
  // The admin's own browser session (their API session from before is another row).
  const mine = online.getByRole('row', { name: /陆建华/ }).filter({ hasText: '本人' });
  await mine.waitFor();
  assert.equal(await mine.getByRole('button', { name: '强制退出' }).count(), 0, 'no sign-out of oneself');
  await shoot(page, 'admin-signed-in-now', DESKTOP);
  await row.getByRole('button', { name: '强制退出' }).click();
  await page.locator('.el-popconfirm:visible').getByRole('button', { name: /确定|OK|Yes/ }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal((await doctor('GET', '/api/session')).status, 401, 'the doctor is signed out');
});

test('a doctor gets no admin screen and no admin API', T, async (t) => {
  if (skip()) return t.skip(skip());
  const doctor = await apiSession(server.base, 'wei.dongping', PW);
  for (const [m, p] of [['GET', '/api/users'], ['GET', '/api/tokens'], ['POST', '/api/institutions']]) {
    assert.equal((await doctor(m, p, m === 'POST' ? { code: 'x', name: 'x', kind: 'clinic' } : undefined)).status, 403, `${m} ${p}`);
  }
  const b = await launchBrowser();
  try {
    const p = await b.context.newPage();
    await signIn(p, 'wei.dongping', PW);
    await p.waitForURL(/\/doctor\/worklist$/);
    for (const path of ['/admin', '/admin/institutions', '/admin/people']) {
      await p.goto(server.base + path);
      await p.waitForURL(/\/doctor\/worklist$/);
    }
    assert.equal(await p.getByRole('link', { name: '人员' }).count(), 0, 'no admin tab');
  } finally {
    await b.close();
  }
});

test('no script error reached the page', (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(pageErrors, []);
});
