// The doctor's screens in real headless Chromium against bin/sanping: the worklist with its
// counts, accept, decline, schedule, start and end the session, the consultation with its
// consent form, series thumbnails and simple image view, the report (autosave, sign with a
// wrong then the right password, an addendum) and the print view. Another clinic and another
// hospital's doctor see none of it. Screenshots: web/test-output/doctor-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, PHONE, DESKTOP, outputDir, dicomInstance, stow, tokenSecret, apiSession, png } from './server.mjs';

const PW = 'doctor-' + randomUUID().slice(0, 8);
const ROOT = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
const STUDY = `${ROOT}.1`;
const SERIES = `${ROOT}.1.1`;
const PATIENT = '黄美玲';

let server;
let browser;
let page;
let urgentId;
const cspViolations = [];
const pageErrors = [];

before(async () => {
  let token = '';
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'hospital', 'bama', '巴马县人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'nongla', '弄拉村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'nongla', '-name', '蒙海', 'meng.hai'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '罗雪梅', '-title', '副主任医师', '-years', '15', 'luo.xuemei'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'bama', '-name', '黄志刚', '-title', '主任医师', '-years', '20', 'huang.zhigang'], PW + '\n');
    token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', '龙山村卫生室-DR']));
  });

  // Clinic A's station sends a CT series of three images; its staff ask for two consultations.
  const files = [1, 2, 3].map((n) =>
    dicomInstance({ study: STUDY, series: SERIES, instance: `${SERIES}.${n}`, number: n, patientName: PATIENT, patientId: 'LS-0042' }));
  await stow(server.base, token, files);
  const clinic = await apiSession(server.base, 'lan.xiuying', PW);
  const insts = await clinic('GET', '/api/institutions');
  const dahua = insts.body.find((i) => i.code === 'dahua');
  assert.ok(dahua, JSON.stringify(insts.body));
  const ask = async (urgency, name, question) => {
    const r = await clinic('POST', '/api/consultations', {
      patient: { id: 'LS-0042', name, sex: 'F', birthDate: '19680412' }, studyUIDs: [STUDY], clinicalQuestion: question,
      purpose: '明确诊断', urgency, targetInstitutionId: dahua.id, consentConfirmed: true, recordingConsent: false,
      proposedAt: '2026-12-01T02:00:00Z',
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
  };
  await ask('routine', '莫小兰', '腰痛两周，请会诊。');
  urgentId = await ask('urgent', PATIENT, '咳嗽、胸闷一月，CT 示右肺阴影，性质待定。');
  const up = await clinic('PUT', `/api/consultations/${urgentId}/consent-form?filename=consent.png`, png(), 'image/png');
  assert.equal(up.status, 200, JSON.stringify(up.body));

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

const T = { timeout: 60_000 };
const skip = () => !page && 'no Chromium at /usr/bin/chromium';

async function signIn(username) {
  await page.goto(server.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill(username);
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
}

async function signOut() {
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/sign-in/);
}

const tab = (name) => page.getByRole('tab', { name: new RegExp(`^${name}`) });
const row = (name) => page.getByRole('article', { name });

async function tabCount(name) {
  return Number(await tab(name).locator('.count').textContent());
}

test('the doctor sees the requests in the worklist, urgent first, with counts', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn('wei.dongping');
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.locator('[data-ready="true"]').waitFor();
  assert.equal(await tabCount('待接收'), 2);
  assert.equal(await tabCount('已预约'), 0);
  assert.equal(await tabCount('已完成'), 0);
  const names = await page.getByRole('article').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
  assert.deepEqual(names, [PATIENT, '莫小兰'], 'the urgent request first');
  const urgent = row(PATIENT);
  for (const text of ['龙山村卫生室', 'CT', '女', '加急', '咳嗽、胸闷一月']) await urgent.getByText(text).first().waitFor();
  await shoot(page, 'doctor-worklist-phone', PHONE);
  await shoot(page, 'doctor-worklist-desktop', DESKTOP);
});

test('declining needs a reason and moves the request to done', T, async (t) => {
  if (skip()) return t.skip(skip());
  await row('莫小兰').getByRole('button', { name: '拒绝' }).click();
  const dialog = page.getByRole('dialog', { name: /拒绝会诊/ });
  await dialog.getByRole('button', { name: '确认拒绝' }).click();
  await dialog.getByRole('alert').filter({ hasText: '请填写拒绝原因' }).waitFor();
  await dialog.getByRole('textbox', { name: /拒绝原因/ }).fill('腰椎问题请转骨科门诊。');
  await dialog.getByRole('button', { name: '确认拒绝' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await tabCount('待接收'), 1);
  assert.equal(await tabCount('已完成'), 1);
});

test('the doctor accepts (self by default, at the wished time) and reschedules with the date picker', T, async (t) => {
  if (skip()) return t.skip(skip());
  await row(PATIENT).getByRole('button', { name: '接收' }).click();
  const dialog = page.getByRole('dialog', { name: /接收会诊/ });
  // The signed-in doctor is chosen already; another doctor of the hospital could be.
  await dialog.getByText('韦东平').first().waitFor();
  await shoot(page, 'doctor-accept-desktop', DESKTOP);
  await dialog.getByRole('button', { name: '确认接收' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await tabCount('待接收'), 0);
  assert.equal(await tabCount('已预约'), 1);

  // The wished time was offered and kept: accepted and scheduled in one step.
  await tab('已预约').click();
  await row(PATIENT).getByText('预约 2026/12/01 10:00').waitFor();
  await row(PATIENT).getByRole('button', { name: '改约' }).click();
  const sched = page.getByRole('dialog', { name: /预约会诊时间/ });
  const when = sched.getByRole('combobox', { name: '会诊时间' }).or(sched.getByPlaceholder('选择日期和时间')).first();
  await when.fill('2026-12-01 10:30');
  await when.press('Enter');
  await when.press('Tab');
  await page.waitForTimeout(300);
  await shoot(page, 'doctor-schedule-phone', PHONE);
  await page.setViewportSize(DESKTOP);
  await sched.getByRole('button', { name: '确认预约' }).click();
  await sched.waitFor({ state: 'hidden' });
  await row(PATIENT).getByText('预约 2026/12/01 10:30').waitFor();
  await row(PATIENT).getByText('已预约', { exact: true }).waitFor();
});

test('the doctor starts the session, can join it, and ends it to write the report', T, async (t) => {
  if (skip()) return t.skip(skip());
  await row(PATIENT).getByRole('button', { name: '开始会诊' }).click();
  // The row moves to the live tab, and its count with it.
  await tab('会诊中').locator('.count', { hasText: /^1$/ }).waitFor();
  assert.equal(await tabCount('已预约'), 0);
  await tab('会诊中').click();
  await row(PATIENT).locator('.state', { hasText: '会诊中' }).waitFor();
  const join = row(PATIENT).getByRole('link', { name: '进入会诊' });
  assert.equal(await join.getAttribute('href'), `/consultations/${urgentId}/live`);
  await shoot(page, 'doctor-worklist-live-phone', PHONE);
  await page.setViewportSize(DESKTOP);
  await row(PATIENT).getByRole('button', { name: '结束会诊，写报告' }).click();
  await tab('待出报告').locator('.count', { hasText: /^1$/ }).waitFor();
  await tab('待出报告').click();
  await row(PATIENT).getByRole('link', { name: '写报告' }).click();
  await page.waitForURL(new RegExp(`/doctor/consultations/${urgentId}$`));
});

test('the consultation shows the request, the consent form, thumbnails and the image view', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('heading', { name: PATIENT }).waitFor();
  await page.getByText('咳嗽、胸闷一月').waitFor();
  const thumb = page.getByRole('button', { name: /CT 序列/ });
  await thumb.waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.thumb img')].every((i) => i.complete && i.naturalWidth > 0));
  // The diagnostic viewer (web/e2e/viewer.test.mjs tests it in depth): its data attributes say
  // what is on screen after each render.
  const viewer = page.getByRole('group', { name: /影像浏览/ });
  await viewer.getByText('1 / 3').waitFor();
  const at = (n) => page.locator(`.dicom-viewer[data-index="${n}"][data-total="3"]`).waitFor();
  await at(1);
  await viewer.press('ArrowRight');
  await at(2);
  await viewer.getByText('2 / 3').waitFor();
  await viewer.press('End');
  await at(3);
  await viewer.press('ArrowDown');
  await viewer.press('ArrowLeft');
  await at(2);

  await page.getByRole('button', { name: '查看知情同意书' }).click();
  await page.getByRole('img', { name: '知情同意书扫描件' }).waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('.consent-img');
    return img && img.naturalWidth === 200;
  });
  await shoot(page, 'doctor-consultation-phone', PHONE);
  await shoot(page, 'doctor-consultation-desktop', DESKTOP);
});

test('the report autosaves, a wrong password is refused, then it is signed and takes an addendum', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('textbox', { name: '检查所见' }).fill('右肺上叶见约 2.1 cm 不规则软组织影，边缘毛刺。');
  await page.getByRole('textbox', { name: '诊断意见' }).fill('右肺上叶占位，考虑周围型肺癌可能。');
  await page.getByRole('textbox', { name: '建议' }).fill('建议增强 CT 及支气管镜活检。');
  await page.getByRole('status').filter({ hasText: /已于 \d\d:\d\d 保存草稿/ }).waitFor();
  await shoot(page, 'doctor-report-draft-desktop', DESKTOP);

  // Leaving and coming back finds the draft.
  await page.getByRole('link', { name: '← 返回工作列表' }).click();
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.goBack();
  await page.getByRole('textbox', { name: '诊断意见' }).waitFor();
  assert.equal(await page.getByRole('textbox', { name: '诊断意见' }).inputValue(), '右肺上叶占位，考虑周围型肺癌可能。');

  await page.getByRole('button', { name: '签名', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: '签名确认' });
  await dialog.getByLabel('登录密码').fill('not-my-password');
  await dialog.getByRole('button', { name: '确认签名' }).click();
  await dialog.getByRole('alert').filter({ hasText: '密码不正确，报告未签名' }).waitFor();
  await shoot(page, 'doctor-sign-wrong-password-phone', PHONE);
  await page.setViewportSize(DESKTOP);
  await dialog.getByLabel('登录密码').fill(PW);
  await dialog.getByRole('button', { name: '确认签名' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const sig = page.getByRole('note', { name: '电子签名' });
  await sig.getByText('签名医生：韦东平（主治医师）· 大化县人民医院').waitFor();
  await sig.getByText(/SHA-256 [0-9a-f]{8}…[0-9a-f]{8}/).waitFor();
  assert.equal(await page.getByRole('textbox', { name: '诊断意见' }).count(), 0, 'a signed report is read-only');
  await page.getByText('报告已签名').first().waitFor();

  await page.getByRole('textbox', { name: '新的补充说明' }).fill('补充：既往有结核病史。');
  await page.getByRole('button', { name: '签名并添加补充说明' }).click();
  const add = page.getByRole('dialog', { name: '补充说明签名确认' });
  await add.getByLabel('登录密码').fill(PW);
  await add.getByRole('button', { name: '确认添加' }).click();
  await add.waitFor({ state: 'hidden' });
  await page.getByRole('listitem').filter({ hasText: '补充：既往有结核病史。' }).waitFor();
  await shoot(page, 'doctor-report-signed-phone', PHONE);
  await shoot(page, 'doctor-report-signed-desktop', DESKTOP);
});

test('the print view renders for A4 and prints to PDF', T, async (t) => {
  if (skip()) return t.skip(skip());
  const link = page.getByRole('link', { name: '打印报告' });
  const href = await link.getAttribute('href');
  assert.equal(href, `/api/consultations/${urgentId}/report/print`);
  assert.equal(await link.getAttribute('target'), '_blank');
  const print = await browser.context.newPage();
  await print.goto(server.base + href);
  await print.getByRole('heading', { name: /远程会诊报告/ }).waitFor();
  const text = await print.locator('body').innerText();
  for (const s of [PATIENT, '右肺上叶占位', '韦东平', '补充：既往有结核病史。']) assert.ok(text.includes(s), `print view lacks ${s}`);
  assert.ok(!text.includes('草稿'), 'a signed report prints without the draft banner');
  await shoot(print, 'doctor-print-phone', PHONE);
  await shoot(print, 'doctor-print-desktop', DESKTOP);
  const pdf = await print.pdf({ format: 'A4', printBackground: true });
  fs.writeFileSync(path.join(outputDir, 'doctor-report.pdf'), pdf);
  assert.equal(pdf.subarray(0, 5).toString(), '%PDF-');
  assert.ok(pdf.length > 10_000, `PDF of ${pdf.length} bytes`);
  await print.close();
  await page.bringToFront();
  await tab('已完成').click().catch(() => undefined);
  await signOut();
});

test('a doctor of another hospital sees an empty worklist and a clear message at the URL', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn('huang.zhigang');
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.locator('[data-ready="true"]').waitFor();
  for (const name of ['待接收', '已预约', '会诊中', '待出报告', '已完成']) assert.equal(await tabCount(name), 0, name);
  await page.getByText('这里暂时没有会诊。').waitFor();
  await page.goto(`${server.base}/doctor/consultations/${urgentId}`);
  await page.getByRole('alert').filter({ hasText: '找不到这条会诊，或您无权查看。' }).waitFor();
  assert.equal(await page.getByText(PATIENT).count(), 0);
  await shoot(page, 'doctor-forbidden-phone', PHONE);
  await page.setViewportSize(DESKTOP);
  await signOut();
});

test('a user of another clinic sees none of it', T, async (t) => {
  if (skip()) return t.skip(skip());
  const other = await apiSession(server.base, 'meng.hai', PW);
  for (const p of [`/api/consultations/${urgentId}`, `/api/consultations/${urgentId}/report`, `/api/consultations/${urgentId}/report/print`,
    `/api/consultations/${urgentId}/consent-form`]) {
    assert.equal((await other('GET', p)).status, 404, p);
  }
  const wl = await other('GET', '/api/worklist');
  assert.equal(wl.status, 200);
  assert.equal(wl.body.items.length, 0);
  assert.equal(wl.body.total, 0);
  const st = await fetch(`${server.base}/dicom-web/studies/${STUDY}/series`, { headers: { Authorization: 'Basic ' + Buffer.from(`meng.hai:${PW}`).toString('base64') } });
  assert.ok([403, 404].includes(st.status), `DICOMweb for another clinic: ${st.status}`);
  // In the browser the doctor's screen is not theirs: back to their home, not a blank page.
  await signIn('meng.hai');
  await page.waitForURL(/\/clinic\//);
  await page.goto(`${server.base}/doctor/consultations/${urgentId}`);
  await page.waitForURL(/\/clinic\//);
  assert.equal(await page.getByText(PATIENT).count(), 0);
});

test('no CSP violation and no uncaught error on any doctor screen', T, (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});
