// The clinic staff's screens in real headless Chromium against bin/sanping: a study folder
// uploaded over a link that drops in the middle (a TCP proxy between browser and server cuts
// every connection for a few seconds), files that are not DICOM named with their reasons, the
// folder picked again after a reload (nothing sent twice), the studies searched by a Chinese
// name, a consultation requested with a consent photo and followed through its states, and a
// user of another clinic who sees none of it. Screenshots: web/test-output/clinic-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { startServer, launchBrowser, shoot, startProxy, makeDicom, PHONE, DESKTOP } from './server.mjs';

const PW = 'clinic-' + randomUUID().slice(0, 8);
const T = { timeout: 120_000 };

let server;
let proxy;
let browser;
let page;
let cdp;
let folder;
const cspViolations = [];
const pageErrors = [];

const STUDY_WANG = '1.2.826.0.1.3680043.10.77.1';
const STUDY_LI = '1.2.826.0.1.3680043.10.77.2';
// 王芳.dcm written by a Chinese Windows PC in GBK and read as Latin-1, as a browser shows such a
// name from a CD or a USB stick: "Íõ·¼.dcm". (Bytes that are not UTF-8 cannot go through
// Playwright's folder upload; the page must show and send the name as the browser gives it.)
const GBK_NAME = Buffer.from([0xcd, 0xf5, 0xb7, 0xbc]).toString('latin1') + '.dcm';

/** The study folder a technician copies off a CT: 9 + 1 (GBK-named) + 3 DICOM files, a note, an empty file. */
function makeFolder() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-clinic-'));
  const dir = path.join(root, 'CT20260301');
  fs.mkdirSync(path.join(dir, 'SE1'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'SE2'));
  const wang = { studyUID: STUDY_WANG, seriesUID: STUDY_WANG + '.1', patientName: 'Wang^Fang=王^芳', patientId: 'LS0001', sex: 'F', birthDate: '19680412',
    studyDate: '20260301', modality: 'CT', description: '胸部平扫' };
  for (let i = 1; i <= 9; i++) {
    fs.writeFileSync(path.join(dir, 'SE1', `IM${String(i).padStart(4, '0')}`), makeDicom({ ...wang, sopUID: `${STUDY_WANG}.1.${i}`, instanceNumber: i, size: 300_000 }));
  }
  fs.writeFileSync(path.join(dir, 'SE1', GBK_NAME), makeDicom({ ...wang, sopUID: `${STUDY_WANG}.1.10`, instanceNumber: 10, size: 300_000 }));
  const li = { studyUID: STUDY_LI, seriesUID: STUDY_LI + '.1', patientName: 'Li^Lei=李^雷', patientId: 'LS0002', sex: 'M', birthDate: '19900101', studyDate: '20260302',
    modality: 'DX', description: '胸部正位' };
  for (let i = 1; i <= 3; i++) {
    fs.writeFileSync(path.join(dir, 'SE2', `IM${i}`), makeDicom({ ...li, sopUID: `${STUDY_LI}.1.${i}`, instanceNumber: i, size: 300_000 }));
  }
  fs.writeFileSync(path.join(dir, 'notes.txt'), '患者自述：咳嗽两周。\n');
  fs.writeFileSync(path.join(dir, 'empty.dcm'), '');
  return { root, dir };
}

/** A small PNG: a photo of a consent form, for the test's purpose. */
function png(width = 120, height = 80) {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b) => {
    let c = 0xffffffff;
    for (const x of b) c = table[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  const raw = Buffer.alloc((width + 1) * height, 230);
  for (let y = 0; y < height; y++) raw[y * (width + 1)] = 0;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** login signs in over the API (the doctor's side of the test). */
async function login(base, username, password) {
  const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) });
  assert.equal(res.status, 200, `login ${username}`);
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const { csrfToken, user } = await res.json();
  const call = async (method, p, body) => {
    const r = await fetch(base + p, { method, headers: { Cookie: cookie, 'X-CSRF-Token': csrfToken, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return { user, call };
}

before(async () => {
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'hospital', '-department', '心内科', 'hechi', '河池市人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'nongla', '弄拉村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'nongla', '-name', '韦小红', 'wei.xiaohong'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', '-specialty', '放射科', 'wei.dongping'], PW + '\n');
  });
  proxy = await startProxy(server.base);
  folder = makeFolder();
  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  cdp = await browser.context.newCDPSession(page);
}, { timeout: 120_000 });

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
  if (folder) fs.rmSync(folder.root, { recursive: true, force: true });
  assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations');
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

const skip = () => !page && 'no Chromium at /usr/bin/chromium';

async function signIn(username) {
  await page.goto(proxy.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill(username);
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
}

async function qidoStudies() {
  const res = await page.request.get(`${server.base}/dicom-web/studies?includefield=all`, { headers: { Accept: 'application/dicom+json' } });
  assert.equal(res.status(), 200);
  return res.json();
}

test('a clinic uploads a study folder over a link that drops; bad files are named with reasons', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn('lan.xiuying');
  await page.waitForURL(/\/clinic\/upload$/);
  await page.getByRole('heading', { name: '上传影像' }).waitFor();
  await shoot(page, 'clinic-upload-empty-phone', PHONE);
  await shoot(page, 'clinic-upload-empty-desktop', DESKTOP);

  // A 4G uplink: 4 Mbit/s up, so the folder takes several seconds and the cut lands mid-way.
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 80, downloadThroughput: 10e6 / 8, uploadThroughput: 4e6 / 8 });
  await page.locator('input[webkitdirectory]').setInputFiles(folder.dir);
  await page.getByText('正在上传').waitFor();
  // Bytes are on the way: the link goes for 3 seconds.
  await page.waitForFunction(() => /^[1-9]/.test(document.querySelector('.bytes')?.textContent ?? ''), null, { timeout: 20_000 });
  await page.waitForTimeout(1500);
  const before = await page.locator('.bytes').textContent();
  await proxy.cut(3000);
  await page.getByText('上传结束').waitFor({ timeout: 90_000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  t.diagnostic(`link cut at ${before}`);

  await page.getByText('已存储 13').waitFor();
  await page.getByText('失败 2').waitFor();
  await page.getByText(`CT20260301/SE1/${GBK_NAME}`).waitFor();
  await shoot(page, 'clinic-upload-done-phone', PHONE);
  await shoot(page, 'clinic-upload-done-desktop', DESKTOP);

  // Every file is stored once: 10 + 3 instances in two studies.
  const studies = await qidoStudies();
  const count = Object.fromEntries(studies.map((s) => [s['0020000D'].Value[0], s['00201208'].Value[0]]));
  assert.deepEqual(count, { [STUDY_WANG]: 10, [STUDY_LI]: 3 });

  // The failed files, each with its reason in plain words.
  await page.getByRole('radio', { name: '失败' }).check({ force: true });
  const list = page.getByRole('list', { name: '文件列表' });
  const notes = list.getByRole('listitem').filter({ hasText: 'notes.txt' });
  await notes.getByText('这不是 DICOM 影像文件').waitFor();
  const empty = list.getByRole('listitem').filter({ hasText: 'empty.dcm' });
  await empty.getByText('空文件').waitFor();
  assert.equal(await list.getByRole('listitem').count(), 2);
  await shoot(page, 'clinic-upload-failed-phone', PHONE);

  // English: the reasons are translated too.
  await page.getByRole('button', { name: 'English' }).click();
  await page.getByRole('list', { name: 'Files' }).getByRole('listitem').filter({ hasText: 'notes.txt' }).getByText('This is not a DICOM image file').waitFor();
  await shoot(page, 'clinic-upload-failed-en-desktop', DESKTOP);
  await page.getByRole('button', { name: '中文' }).click();
});

test('after a reload the same folder is recognised: nothing is sent again', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.reload();
  await page.getByRole('heading', { name: '上传影像' }).waitFor();
  let creates = 0;
  const count = (req) => {
    if (req.method() === 'POST' && req.url().includes('/api/uploads/')) creates++;
  };
  page.on('request', count);
  await page.locator('input[webkitdirectory]').setInputFiles(folder.dir);
  await page.getByText('上传结束').waitFor({ timeout: 30_000 });
  page.off('request', count);
  await page.getByText('已存在 13').waitFor();
  await page.getByText('失败 2').waitFor();
  assert.equal(creates, 0, 'no upload was created for files sent before');
  await page.getByText('之前已上传').first().waitFor();
  const studies = await qidoStudies();
  assert.equal(studies.reduce((n, s) => n + s['00201208'].Value[0], 0), 13);
});

test('the studies are found by a Chinese name, an ID and a date range', T, async (t) => {
  if (skip()) return t.skip(skip());
  const nav = page.getByRole('navigation', { name: '主导航' });
  await nav.getByRole('link', { name: '检查' }).click();
  await page.getByRole('heading', { name: '本机构的检查' }).waitFor();
  const results = page.getByRole('list', { name: '检查列表' });
  await results.getByRole('listitem').nth(1).waitFor();
  assert.equal(await results.getByRole('listitem').count(), 2);
  await results.getByText('王芳 (Wang Fang)').waitFor();
  await results.getByText('10 张图像', { exact: false }).waitFor();
  // The thumbnail is the server's rendering.
  await page.waitForFunction(() => [...document.querySelectorAll('.thumb img')].every((i) => i.complete && i.naturalWidth > 0));
  await shoot(page, 'clinic-studies-phone', PHONE);
  await shoot(page, 'clinic-studies-desktop', DESKTOP);

  await page.getByRole('searchbox', { name: '患者姓名' }).fill('芳');
  await page.getByRole('button', { name: '搜索' }).click();
  await page.waitForURL(/name=/);
  await results.getByText('王芳 (Wang Fang)').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.study').length === 1);
  await shoot(page, 'clinic-studies-search-phone', PHONE);

  await page.getByRole('button', { name: '清除条件' }).click();
  await page.getByRole('searchbox', { name: '患者 ID' }).fill('LS0002');
  await page.getByRole('button', { name: '搜索' }).click();
  await results.getByText('李雷 (Li Lei)').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.study').length === 1);

  await page.getByRole('button', { name: '清除条件' }).click();
  await page.getByLabel('检查日期从').fill('2026-03-02');
  await page.getByLabel('到', { exact: true }).fill('2026-03-31');
  await page.getByRole('button', { name: '搜索' }).click();
  await results.getByText('李雷 (Li Lei)').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.study').length === 1);

  await page.getByRole('searchbox', { name: '患者姓名' }).fill('张');
  await page.getByRole('button', { name: '搜索' }).click();
  await page.getByText('没有符合条件的检查。').waitFor();
  await page.getByRole('button', { name: '清除条件' }).click();
});

let requestId;

test('a consultation is requested with a consent photo, with messages for what is missing', T, async (t) => {
  if (skip()) return t.skip(skip());
  const row = page.locator('.study').filter({ hasText: '王芳' });
  await row.getByRole('link', { name: '申请会诊' }).click();
  await page.getByRole('heading', { name: '申请会诊' }).waitFor();
  await page.getByText('胸部平扫').waitFor();
  // Nothing filled: each field says what it needs.
  await page.getByRole('button', { name: '提交申请' }).click();
  await page.getByText('请按提示修改后再提交。').waitFor();
  await page.getByText('请填写临床问题。').waitFor();
  await page.getByText('请选择会诊医院。').waitFor();
  await page.getByText('请拍照或选择签字的知情同意书。').waitFor();
  await page.getByText('请确认患者已签署知情同意书。').waitFor();
  await shoot(page, 'clinic-request-invalid-phone', PHONE);

  await page.getByLabel('临床问题').fill('咳嗽两周，低热。请协助判断右下肺阴影性质。');
  await page.getByRole('radio', { name: '加急' }).check();
  await page.getByLabel('医院', { exact: true }).selectOption({ label: '大化县人民医院' });
  await page.getByLabel('科室 / 专业').selectOption('放射科');
  await page.getByLabel('指定医生').selectOption({ label: '韦东平 主治医师（放射科）' });
  await page.locator('input[type=file][capture]').setInputFiles({ name: '知情同意书.png', mimeType: 'image/png', buffer: png() });
  await page.getByText('知情同意书.png').waitFor();
  await page.getByLabel('患者（或监护人）已签署知情同意书').check();
  await shoot(page, 'clinic-request-form-phone', PHONE);
  await shoot(page, 'clinic-request-form-desktop', DESKTOP);
  await page.getByRole('button', { name: '提交申请' }).click();
  await page.waitForURL(/\/clinic\/requests\?id=\d+/);
  await page.getByText('会诊申请已提交，知情同意书已上传。').waitFor();
  requestId = Number(new URL(page.url()).searchParams.get('id'));
  await page.getByRole('link', { name: /查看 知情同意书/ }).waitFor();
  await shoot(page, 'clinic-request-detail-phone', PHONE);
  await shoot(page, 'clinic-request-detail-desktop', DESKTOP);

  const res = await page.request.get(`${server.base}/api/consultations/${requestId}`);
  const c = await res.json();
  assert.equal(c.state, 'requested');
  assert.equal(c.urgency, 'urgent');
  assert.equal(c.consentForm.contentType, 'image/png');
  assert.deepEqual(c.studyUIDs, [STUDY_WANG]);
  assert.equal(c.patient.name, '王芳');
});

test('the requests list follows the states: scheduled, live (join), done (report, print), cancelled', T, async (t) => {
  if (skip()) return t.skip(skip());
  const doctor = await login(server.base, 'wei.dongping', PW);
  const clinic = await login(server.base, 'lan.xiuying', PW);
  // A second request, to be cancelled from the screen.
  const second = await clinic.call('POST', '/api/consultations', {
    patient: { name: '李雷' }, studyUIDs: [STUDY_LI], clinicalQuestion: '复查', purpose: '第二意见', urgency: 'routine', targetInstitutionId: (await clinic.call('GET', '/api/institutions')).find((i) => i.code === 'dahua').id, consentConfirmed: true,
  });

  await page.getByRole('navigation', { name: '主导航' }).getByRole('link', { name: '会诊申请' }).click();
  const list = page.getByRole('list', { name: '会诊申请列表' });
  await list.getByText(`#${requestId} 王芳`).waitFor();
  await list.getByRole('listitem').filter({ hasText: `#${requestId}` }).getByText('已申请').waitFor();
  await shoot(page, 'clinic-requests-phone', PHONE);
  await shoot(page, 'clinic-requests-desktop', DESKTOP);

  const at = new Date(Date.now() + 3600_000).toISOString();
  await doctor.call('POST', `/api/consultations/${requestId}/accept`, { doctorId: doctor.user.id, scheduledAt: at });
  await page.reload();
  await list.getByRole('listitem').filter({ hasText: `#${requestId}` }).getByText('已排期').waitFor();

  await doctor.call('POST', `/api/consultations/${requestId}/start`);
  await page.reload();
  const live = list.getByRole('listitem').filter({ hasText: `#${requestId}` });
  await live.getByText('会诊中').waitFor();
  assert.equal(await live.getByRole('link', { name: '进入会诊' }).getAttribute('href'), `/consultations/${requestId}/live`);
  await shoot(page, 'clinic-requests-live-phone', PHONE);

  await doctor.call('POST', `/api/consultations/${requestId}/finish`);
  await page.reload();
  await list.getByRole('listitem').filter({ hasText: `#${requestId}` }).getByText('待出报告').waitFor();
  await doctor.call('PUT', `/api/consultations/${requestId}/report`, { findings: '右下肺见斑片状高密度影。', impression: '右下肺炎症可能。', recommendations: '抗感染治疗后两周复查。' });
  await doctor.call('POST', `/api/consultations/${requestId}/report/sign`, { password: PW });
  await page.reload();
  const done = list.getByRole('listitem').filter({ hasText: `#${requestId}` });
  await done.getByText('已完成').waitFor();
  await done.getByRole('link', { name: '查看报告' }).click();
  await page.getByRole('heading', { name: '会诊报告' }).waitFor();
  await page.getByText('右下肺炎症可能。').waitFor();
  await page.getByText(/大化县人民医院 韦东平 主治医师 签发于/).waitFor();
  const print = await page.getByRole('link', { name: '打印报告' }).getAttribute('href');
  const printed = await page.request.get(server.base + print);
  assert.equal(printed.status(), 200);
  assert.match(await printed.text(), /右下肺炎症可能/);
  await shoot(page, 'clinic-request-report-phone', PHONE);
  await shoot(page, 'clinic-request-report-desktop', DESKTOP);

  // Cancel the second one, with a confirmation and a reason.
  await page.goto(`${proxy.base}/clinic/requests?id=${second.id}`);
  await page.getByRole('button', { name: '取消申请' }).click();
  const dialog = page.getByRole('dialog', { name: '取消会诊申请' });
  await dialog.getByRole('button', { name: '确定取消' }).click();
  await dialog.getByText('请填写取消原因。').waitFor();
  await dialog.getByLabel('取消原因').fill('患者已转诊至市医院');
  await shoot(page, 'clinic-request-cancel-phone', PHONE);
  await dialog.getByRole('button', { name: '确定取消' }).click();
  await page.getByText('已取消：患者已转诊至市医院').waitFor();
  assert.equal((await clinic.call('GET', `/api/consultations/${second.id}`)).state, 'cancelled');
});

test('a user of another clinic sees none of it', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.getByText('您已退出登录。').waitFor();
  await signIn('wei.xiaohong');
  await page.waitForURL(/\/clinic\/upload$/);
  // Another user's browser record is not theirs either: the upload screen starts empty.
  assert.equal(await page.getByText('上传结束').count(), 0);
  await page.goto(proxy.base + '/clinic/studies');
  await page.getByText('本机构还没有检查。').waitFor();
  await page.goto(proxy.base + '/clinic/studies?name=' + encodeURIComponent('王'));
  await page.getByText('没有符合条件的检查。').waitFor();
  await shoot(page, 'clinic-other-studies-phone', PHONE);
  await page.goto(proxy.base + '/clinic/requests');
  await page.getByText('还没有会诊申请。').waitFor();
  await page.goto(`${proxy.base}/clinic/requests?id=${requestId}`);
  await page.getByText('找不到这个会诊申请：它不存在，或不属于本机构。').waitFor();
  await shoot(page, 'clinic-other-request-phone', PHONE);
  await shoot(page, 'clinic-other-request-desktop', DESKTOP);
  await page.goto(`${proxy.base}/clinic/requests?new=1&study=${STUDY_WANG}`);
  await page.getByText('找不到这个检查，或您无权查看。').waitFor();
  // Their upload of an image claiming the first clinic's study is refused, with a reason.
  const theirs = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-other-'));
  fs.writeFileSync(path.join(theirs, 'IM1'), makeDicom({ studyUID: STUDY_WANG, seriesUID: STUDY_WANG + '.9', sopUID: STUDY_WANG + '.9.1', patientName: 'Nong^Ke=农^可' }));
  await page.goto(proxy.base + '/clinic/upload');
  await page.locator('input[type=file][multiple]:not([webkitdirectory])').setInputFiles(path.join(theirs, 'IM1'));
  await page.getByText('上传结束').waitFor();
  await page.getByText('这个检查的编号已被其他机构的检查使用，服务器拒收。', { exact: false }).waitFor();
  await shoot(page, 'clinic-other-refused-phone', PHONE);
  fs.rmSync(theirs, { recursive: true, force: true });
  const thumb = await page.request.get(`${server.base}/dicom-web/studies/${STUDY_WANG}/thumbnail`);
  assert.equal(thumb.status(), 404);
  const consent = await page.request.get(`${server.base}/api/consultations/${requestId}/consent-form`);
  assert.equal(consent.status(), 404);
});
