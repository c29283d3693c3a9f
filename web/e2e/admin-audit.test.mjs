// The admin console's audit trail, alarm and dashboard in headless Chromium against
// bin/sanping: the admin lands on the dashboard (consultations per day, per institution and
// doctor, storage), searches the trail by actor and action and pages back with "more",
// exports a time range as CSV and JSON (each parses, agrees row for row with GET /api/audit
// and carries the head /api/audit/verify names); then someone with disk access drops the
// trail's triggers and rewrites an entry, and after a restart every admin page shows the red
// alarm and the audit page the first bad entry. A doctor gets no audit screen.
// Screenshots: web/test-output/admin-audit-*.png, admin-dashboard*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, DESKTOP, PHONE, apiSession, dicomInstance, stow, tokenSecret } from './server.mjs';

const PW = 'audit-' + randomUUID().slice(0, 8);
const ROOT = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
const STUDY = `${ROOT}.1`;
const SERIES = `${ROOT}.1.1`;
// Entries the admin's own audit searches write (audit.read, one per distinct search): more
// than the page's 50, so "more" has a second page.
const SEARCHES = 60;

let server;
let liveId;
let browser;
let page;
const pageErrors = [];

before(async () => {
  let token = '';
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'nongla', '弄拉村卫生室']);
    cli(['user', 'add', '-roles', 'admin', '-name', '陆建华', 'lu.jianhua'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', '龙山村卫生室-DR']));
    cli(['token', 'create', '-institution', 'nongla', '弄拉村卫生室-DR']);
  });

  // A station sends a CT; the clinic asks for two consultations; the doctor accepts one.
  await stow(server.base, token, [1, 2, 3].map((n) =>
    dicomInstance({ study: STUDY, series: SERIES, instance: `${SERIES}.${n}`, number: n, patientName: '黄美玲', patientId: 'LS-0042' })));
  const clinic = await apiSession(server.base, 'lan.xiuying', PW);
  const dahua = (await clinic('GET', '/api/institutions')).body.find((i) => i.code === 'dahua');
  const ids = [];
  for (const question of ['腰痛两周，请会诊。', '咳嗽、胸闷一月，CT 示右肺阴影。']) {
    const r = await clinic('POST', '/api/consultations', {
      patient: { id: 'LS-0042', name: '黄美玲', sex: 'F', birthDate: '19680412' }, studyUIDs: [STUDY], clinicalQuestion: question,
      purpose: '明确诊断', urgency: 'routine', targetInstitutionId: dahua.id, consentConfirmed: true, recordingConsent: false,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    ids.push(r.body.id);
  }
  const doctor = await apiSession(server.base, 'wei.dongping', PW);
  const me = (await doctor('GET', '/api/session')).body.user;
  const acc = await doctor('POST', `/api/consultations/${ids[0]}/accept`, { doctorId: me.id, scheduledAt: new Date(Date.now() + 3600_000).toISOString() });
  assert.equal(acc.status, 200, JSON.stringify(acc.body));
  const st = await doctor('POST', `/api/consultations/${ids[0]}/start`);
  assert.equal(st.status, 200, JSON.stringify(st.body));
  liveId = ids[0];

  const admin = await apiSession(server.base, 'lu.jianhua', PW);
  for (let i = 0; i < SEARCHES; i++) assert.equal((await admin('GET', `/api/audit?limit=1&object=${i}`)).status, 200);

  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
}, { timeout: 180_000 });

after(async () => {
  await browser?.close();
  await server?.stop();
});

const T = { timeout: 180_000 };
const skip = () => !page && 'no Chromium at /usr/bin/chromium';

async function signIn(p, username, password) {
  await p.goto(server.base + '/sign-in');
  await p.getByRole('textbox', { name: '用户名' }).fill(username);
  await p.getByLabel('密码', { exact: true }).fill(password);
  await p.getByRole('button', { name: '登录', exact: true }).click();
}

/** phoneShot opens the page afresh at a phone's size (as a phone would load it), then shoots it. */
async function phoneShot(name, ready) {
  await page.setViewportSize(PHONE);
  await page.reload();
  await ready();
  await shoot(page, name, PHONE);
  await page.setViewportSize(DESKTOP);
  await page.reload();
}

/** chinaWall is a moment as China's wall clock reads it, as the range picker takes it. */
const chinaWall = (ms) => new Date(ms + 8 * 3600_000).toISOString().slice(0, 19).replace('T', ' ');

/** parseCSV reads RFC 4180 CSV (quoted fields with commas, quotes and newlines). */
function parseCSV(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else if (c !== '\r') field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

// The export defuses spreadsheet formulas with a leading quote; a reader takes one off.
const unquote = (f) => (f.length > 1 && f[0] === "'" && "=+-@\t\r'".includes(f[1]) ? f.slice(1) : f);

/** allPages reads GET /api/audit with the query to its last page, following next. */
async function allPages(api, query) {
  const out = [];
  let before = '';
  for (;;) {
    const r = await api('GET', `/api/audit?${query}&limit=500${before}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.entries);
    if (!r.body.next) return out;
    before = `&before=${r.body.next}`;
  }
}

test('the admin lands on the dashboard: consultations, storage, live rooms', T, async (t) => {
  if (skip()) return t.skip(skip());
  // The doctor is in the live room (another browser: its own session).
  const doctorBrowser = await launchBrowser();
  t.after(() => doctorBrowser.close());
  const dp = await doctorBrowser.context.newPage();
  await dp.goto(`${server.base}/sign-in?next=${encodeURIComponent(`/consultations/${liveId}/live?auto=1`)}`);
  await dp.getByRole('textbox', { name: '用户名' }).fill('wei.dongping');
  await dp.getByLabel('密码', { exact: true }).fill(PW);
  await dp.getByRole('button', { name: '登录', exact: true }).click();
  await dp.waitForFunction(() => window.sanping?.status === 'connected', null, { timeout: 30_000 });

  await signIn(page, 'lu.jianhua', PW);
  await page.waitForURL(/\/admin\/dashboard$/);
  await page.getByRole('heading', { name: '概览', level: 1 }).waitFor();
  const tabs = await page.getByRole('navigation', { name: '主导航' }).getByRole('link').allTextContents();
  assert.deepEqual(tabs.map((s) => s.trim()), ['概览', '机构与工作站', '人员', '会诊记录', '审计']);
  assert.equal((await page.getByTestId('figure-total').locator('strong').textContent()).trim(), '2');
  // uPlot drew the consultations per day: a canvas with today's bar of 2.
  const perDay = page.getByRole('article', { name: '每日会诊申请' });
  await perDay.locator('canvas').waitFor();
  assert.ok((await perDay.locator('canvas').boundingBox()).width > 600, 'the chart fills its card');
  await page.getByRole('article', { name: '各机构会诊' }).getByRole('row', { name: /龙山村卫生室\s*2\s*0/ }).waitFor();
  await page.getByRole('article', { name: '各机构会诊' }).getByRole('row', { name: /大化县人民医院\s*0\s*2/ }).waitFor();
  await page.getByRole('article', { name: '各医生会诊' }).getByRole('row', { name: /韦东平\s*大化县人民医院\s*1/ }).waitFor();
  await page.getByRole('article', { name: '每月新增存储' }).locator('canvas').waitFor();
  assert.match(await page.getByTestId('figure-storage').textContent(), /\d+(\.\d+)? (B|KB|MB)/);
  const room = page.getByRole('article', { name: '正在进行的会诊室' }).locator(`[data-consultation="${liveId}"]`);
  await room.getByText(/韦东平 · 医生 · 大化县人民医院/).waitFor();
  assert.equal((await page.getByTestId('figure-live').locator('strong').textContent()).trim(), '1');
  assert.equal(await page.getByTestId('audit-alarm').count(), 0, 'no alarm while the chain holds');
  await shoot(page, 'admin-dashboard', DESKTOP);
  await phoneShot('admin-dashboard-phone', () => page.getByRole('article', { name: '每日会诊申请' }).locator('canvas').waitFor());
});

test('the admin searches the trail by actor and action and pages back with "more"', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('link', { name: '审计', exact: true }).click();
  await page.waitForURL(/\/admin\/audit$/);
  const card = page.getByTestId('audit-chain');
  await card.getByText('审计链完整').waitFor();
  const api = await apiSession(server.base, 'lu.jianhua', PW);
  const verify = (await api('GET', '/api/audit/verify')).body;
  assert.equal(verify.holds, true);
  // The card shows the head as it was when the page checked (the page's own search came after).
  const shownHead = card.getByTestId('chain-head-hash');
  const headSeq = Number(await shownHead.getAttribute('data-seq'));
  const [headEntry] = (await api('GET', `/api/audit?before=${headSeq + 1}&limit=1`)).body.entries;
  assert.equal(await shownHead.getAttribute('title'), headEntry.hash);
  assert.ok(headSeq <= verify.head.seq);

  const form = page.getByRole('form', { name: '查找审计记录' });
  await form.getByLabel('操作人', { exact: true }).fill('lu.jianhua');
  await form.getByRole('combobox', { name: '操作' }).click();
  await page.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: 'audit.*' }).click();
  await form.getByRole('button', { name: '查找' }).click();
  const rows = page.getByTestId('audit-entries').locator('.el-table__body-wrapper tbody tr.el-table__row');
  await page.getByTestId('audit-count').getByText('已显示 50 条').waitFor();
  const firstPage = await rows.count();
  assert.equal(firstPage, 50);
  for (const text of await rows.locator('td:nth-child(4)').allTextContents()) assert.equal(text.trim(), 'lu.jianhua');
  for (const text of await rows.locator('td:nth-child(7)').allTextContents()) assert.match(text.trim(), /^audit\./);
  await page.getByTestId('audit-more').click();
  await page.getByTestId('audit-count').getByText(/已显示 (\d+) 条/).filter({ hasNotText: '已显示 50 条' }).waitFor();
  const seqs = (await rows.locator('td:nth-child(2)').allTextContents()).map(Number);
  assert.ok(seqs.length > SEARCHES, `${seqs.length} entries after "more"`);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first, no entry twice');
  assert.equal(new Set(seqs).size, seqs.length);
  // The same search by the API, to its end, is what the page shows.
  const want = await allPages(api, 'actor=lu.jianhua&action=audit.');
  assert.deepEqual(seqs, want.filter((e) => e.seq <= seqs[0]).map((e) => e.seq));
  // A row opens to its whole detail and hashes.
  await rows.first().locator('.el-table__expand-icon').click();
  await page.locator('.entry-detail').first().getByText(want.find((e) => e.seq === seqs[0]).hash).waitFor();
  await shoot(page, 'admin-audit-search', DESKTOP);
});

test('the admin exports a range as CSV and JSON that agree with the search and the head', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: '清空' }).click();
  const now = Date.now();
  const from = chinaWall(now - 3600_000);
  const to = chinaWall(now + 3600_000);
  const start = page.locator('input.el-range-input[placeholder="开始时间"]');
  await start.click();
  await start.fill(from);
  await start.press('Enter');
  const end = page.locator('input.el-range-input[placeholder="结束时间"]');
  await end.click();
  await end.fill(to);
  await end.press('Enter');
  // Enter in the second box takes the range and closes the panel; its OK button does if not.
  const panel = page.locator('.el-picker-panel:visible');
  await panel.waitFor({ state: 'hidden', timeout: 2000 }).catch(() => panel.getByRole('button', { name: /确定|OK/ }).click());
  assert.equal(await start.inputValue(), from);
  assert.equal(await end.inputValue(), to);
  const api = await apiSession(server.base, 'lu.jianhua', PW);
  const range = `from=${encodeURIComponent(from.replace(' ', 'T') + '+08:00')}&to=${encodeURIComponent(to.replace(' ', 'T') + '+08:00')}`;

  async function exportAs(format) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(`export-${format}`).click()]);
    const text = fs.readFileSync(await download.path(), 'utf8');
    const shown = page.getByTestId('export-head');
    await shown.filter({ hasText: format.toUpperCase() }).waitFor();
    const head = { seq: Number(await shown.getAttribute('data-seq')), hash: await shown.getAttribute('data-hash') };
    const verify = (await api('GET', '/api/audit/verify')).body;
    assert.deepEqual(head, { seq: verify.head.seq, hash: verify.head.hash }, `${format}: the head shown is the chain's`);
    assert.match(download.suggestedFilename(), new RegExp(`^sanping-audit-\\d{4}-\\d{2}-\\d{2}_\\d{4}-\\d{2}-\\d{2}\\.${format}$`));
    return { text, head };
  }

  const csv = await exportAs('csv');
  const lines = parseCSV(csv.text);
  assert.match(lines[0][0], new RegExp(`^# sanping audit export; head seq=${csv.head.seq} hash=${csv.head.hash}`));
  const header = lines[1];
  const csvRows = lines.slice(2).map((r) => Object.fromEntries(header.map((h, i) => [h, unquote(r[i] ?? '')])));
  assert.ok(csvRows.length > SEARCHES, `${csvRows.length} CSV rows`);

  const json = await exportAs('json');
  const exported = JSON.parse(json.text);
  assert.deepEqual(exported.head.seq, json.head.seq);
  assert.equal(exported.head.hash, json.head.hash);
  assert.equal(json.head.seq, csv.head.seq + 1, 'the JSON export follows the CSV export (each is recorded)');

  // GET /api/audit over the same range, up to each export's head, is the export in reverse.
  const searched = (await allPages(api, range)).reverse();
  const upTo = (seq) => searched.filter((e) => e.seq <= seq);
  assert.deepEqual(exported.entries, upTo(json.head.seq), 'JSON export = search');
  const s = upTo(csv.head.seq);
  assert.equal(csvRows.length, s.length);
  csvRows.forEach((r, i) => {
    const e = s[i];
    assert.deepEqual(
      { ...r, seq: Number(r.seq), time: Date.parse(r.time) },
      { seq: e.seq, time: Date.parse(e.time), actor: e.actor, role: e.role, institution: e.institution, ip: e.ip, userAgent: e.userAgent, action: e.action,
        object: e.object, outcome: e.outcome, detail: e.detail ?? '', patientId: e.patientId ?? '', patientName: e.patientName ?? '', prevHash: e.prevHash, hash: e.hash },
      `CSV row ${i + 1}`,
    );
  });
  // The chain links across the export: each entry's prevHash is the one before's hash.
  for (let i = 1; i < exported.entries.length; i++) assert.equal(exported.entries[i].prevHash, exported.entries[i - 1].hash);
  assert.equal(exported.entries.at(-1).hash, json.head.hash);
  await shoot(page, 'admin-audit-export', DESKTOP);
});

test('a rewritten entry raises the red alarm on every admin page', T, async (t) => {
  if (skip()) return t.skip(skip());
  try {
    execFileSync('sqlite3', ['-version']);
  } catch {
    if (process.env.CI) throw new Error('no sqlite3 (apt-get install sqlite3): CI must run the tampering test');
    return t.skip('no sqlite3 (apt-get install sqlite3)');
  }
  const api = await apiSession(server.base, 'lu.jianhua', PW);
  const victim = (await allPages(api, 'action=consultation.request')).at(-1);
  assert.ok(victim, 'a consultation request to rewrite');
  // Someone with write access to the data directory does what the triggers refuse the app:
  // drops them and rewrites who asked for the consultation. The station 弄拉村卫生室-DR is
  // made three days old and never seen, so the dashboard lists it as quiet.
  await server.restart((data) => {
    const old = Date.now() - 3 * 86_400_000;
    execFileSync('sqlite3', [path.join(data, 'index.db')], {
      input: `DROP TRIGGER audit_log_no_update;
UPDATE audit_log SET actor = 'someone.else' WHERE seq = ${victim.seq};
UPDATE api_tokens SET created_at = ${old} WHERE name = '弄拉村卫生室-DR';
`,
    });
  });
  await browser.context.clearCookies();
  await signIn(page, 'lu.jianhua', PW);
  await page.waitForURL(/\/admin\/dashboard$/);
  const alarm = page.getByTestId('audit-alarm');
  await alarm.getByText(`审计链校验失败：第 ${victim.seq} 条起记录被改动或删除。`).waitFor();
  await page.getByRole('article', { name: '超过一天未上线的工作站' }).getByRole('row', { name: /弄拉村卫生室-DR\s*弄拉村卫生室\s*从未\s*30 天内无上传/ }).waitFor();
  await shoot(page, 'admin-audit-alarm-dashboard', DESKTOP);

  await page.getByRole('link', { name: '机构与工作站' }).click();
  await page.waitForURL(/\/admin\/institutions$/);
  await alarm.getByText(`第 ${victim.seq} 条`).waitFor();
  await shoot(page, 'admin-audit-alarm-institutions', DESKTOP);

  await alarm.getByRole('link', { name: '查看审计日志' }).click();
  await page.waitForURL(/\/admin\/audit$/);
  const card = page.getByTestId('audit-chain');
  await card.getByTestId('chain-broken-at').getByText(`第 ${victim.seq} 条起`).waitFor();
  assert.equal(await card.getAttribute('data-state'), 'broken');
  const verify = (await api('GET', '/api/audit/verify')).body;
  assert.equal(verify.holds, false);
  assert.equal(verify.brokenAt, victim.seq);
  await shoot(page, 'admin-audit-broken', DESKTOP);
  await phoneShot('admin-audit-broken-phone', () => page.getByTestId('chain-broken-at').waitFor());
});

test('a doctor gets no audit screen, no alarm and no audit API', T, async (t) => {
  if (skip()) return t.skip(skip());
  const doctor = await apiSession(server.base, 'wei.dongping', PW);
  for (const p of ['/api/audit', '/api/audit/verify', '/api/audit/export', '/api/dashboard']) {
    assert.equal((await doctor('GET', p)).status, 403, p);
  }
  const b = await launchBrowser();
  try {
    const p = await b.context.newPage();
    const asked = [];
    p.on('request', (r) => asked.push(new URL(r.url()).pathname));
    await signIn(p, 'wei.dongping', PW);
    await p.waitForURL(/\/doctor\/worklist$/);
    for (const where of ['/admin/audit', '/admin/dashboard', '/admin']) {
      await p.goto(server.base + where);
      await p.waitForURL(/\/doctor\/worklist$/);
    }
    await p.getByRole('navigation', { name: '主导航' }).waitFor();
    assert.equal(await p.getByRole('link', { name: '审计' }).count(), 0, 'no audit tab');
    assert.equal(await p.getByTestId('audit-alarm').count(), 0, 'no alarm for a doctor, though the chain is broken');
    assert.deepEqual(asked.filter((x) => x.startsWith('/api/audit')), [], 'the doctor\'s pages never ask to verify');
  } finally {
    await b.close();
  }
});

test('no script error reached the page', (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(pageErrors, []);
});
