// The diagnostic viewer (web/src/viewer/) in real headless Chromium against bin/sanping: a CT
// series of 60 slices (512x512, 16-bit signed, rescale -1024, Pixel Spacing), a multi-frame
// ultrasound clip and a DR without Pixel Spacing in one study; a doctor opens the
// consultation and reads it. Screenshots: web/test-output/viewer-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, DESKTOP, PHONE, dicomImage, stowMany, tokenSecret, requestConsultation } from './server.mjs';

const PW = 'viewer-' + randomUUID().slice(0, 8);
const ROOT = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
const STUDY = `${ROOT}.1`;
const CT = `${STUDY}.1`;
const US = `${STUDY}.2`;
const DR = `${STUDY}.3`;
const SLICES = 60;
const FRAMES = 24;
const PATIENT = '覃桂兰';

let server;
let browser;
let page;
let consultation;
const pageErrors = [];
const cspViolations = [];

before(async () => {
  let token = '';
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
    token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', '龙山村卫生室-CT']));
  });
  const common = { study: STUDY, patientName: PATIENT, patientId: 'LS-0108', sex: 'F', birthDate: '19610305' };
  const files = [];
  for (let n = 1; n <= SLICES; n++) files.push(dicomImage({ ...common, kind: 'ct', series: CT, instance: `${CT}.${n}`, number: n, slices: SLICES, seriesNumber: 2, description: '胸部 平扫 5mm' }));
  files.push(dicomImage({ ...common, kind: 'us', series: US, instance: `${US}.1`, frames: FRAMES, frameTime: 40, size: 320, seriesNumber: 3, description: '心脏 超声' }));
  files.push(dicomImage({ ...common, kind: 'dr', series: DR, instance: `${DR}.1`, size: 800, seriesNumber: 1, description: '胸部 正位' }));
  await stowMany(server.base, token, files);

  consultation = await requestConsultation(server.base, 'lan.xiuying', PW, {
    patient: { id: 'LS-0108', name: PATIENT, sex: 'F', birthDate: '19610305' }, study: STUDY, question: '咳嗽两月，右肺结节？', urgency: 'urgent',
  });

  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
}, { timeout: 180_000 });

after(async () => {
  await browser?.close();
  await server?.stop();
});

const T = { timeout: 90_000 };
const skip = () => !page && 'no Chromium at /usr/bin/chromium';
const viewer = () => page.locator('.dicom-viewer');
const attr = (name) => viewer().getAttribute(name);
const num = async (name) => Number(await attr(name));

/** waitAttr waits until the viewer's attribute satisfies pred (polled: the page's CSP forbids eval). */
async function waitAttr(name, pred, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let v = null;
  for (;;) {
    v = await viewer().getAttribute(name, { timeout: 1000 }).catch(() => null);
    if (v !== null && pred(v)) return v;
    if (Date.now() > deadline) throw new Error(`data attribute ${name} is ${JSON.stringify(v)} after ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** painted: the fraction of the main canvas' pixels that are not black. */
async function painted() {
  return page.evaluate(() => {
    const c = document.querySelector('.pane[data-pane="0"] canvas');
    if (!c) return 0;
    const w = c.width;
    const h = c.height;
    const tmp = document.createElement('canvas');
    tmp.width = w;
    tmp.height = h;
    const ctx = tmp.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, w, h).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 16) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
    return lit / (d.length / 16);
  });
}

async function box() {
  const b = await page.locator('.pane[data-pane="0"] .vp').boundingBox();
  return { ...b, cx: b.x + b.width / 2, cy: b.y + b.height / 2 };
}

test('a doctor opens the consultation and the first CT image draws', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.goto(server.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('wei.dongping');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.goto(`${server.base}/doctor/consultations/${consultation}`);
  await page.getByRole('heading', { name: PATIENT }).waitFor();
  await waitAttr('data-instance', (v) => v.length > 0, 30_000);
  // Series are in Series Number order: the DR (1) first.
  assert.equal(await attr('data-series'), DR);
  await page.getByRole('button', { name: /CT 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.1'));
  assert.equal(await attr('data-study'), STUDY);
  assert.equal(await attr('data-instance'), `${CT}.1`);
  assert.equal(await attr('data-frame'), '1');
  assert.equal(await attr('data-total'), String(SLICES));
  await page.waitForFunction(() => {
    const c = document.querySelector('.pane[data-pane="0"] canvas');
    return c && c.width > 0;
  });
  await page.waitForTimeout(300);
  const lit = await painted();
  assert.ok(lit > 0.1, `the canvas is blank (${lit})`);
  // The CT's own window (40/400) is what "as stored" shows.
  assert.equal(await num('data-window-center'), 40);
  assert.equal(await num('data-window-width'), 400);
  assert.equal(await attr('data-zoom'), '1');
  await page.getByText(PATIENT).last().waitFor();
  await shoot(page, 'viewer-ct-desktop', DESKTOP);
});

test('the wheel, the keyboard and a drag in scroll mode move through the series', T, async (t) => {
  if (skip()) return t.skip(skip());
  const b = await box();
  await page.mouse.move(b.cx, b.cy);
  for (let i = 0; i < 3; i++) await page.mouse.wheel(0, 100);
  await waitAttr('data-index', (v) => Number(v) >= 3);
  assert.notEqual(await attr('data-instance'), `${CT}.1`);
  const afterWheel = await num('data-index');
  await viewer().press('End');
  await waitAttr('data-index', (v) => v === '60');
  assert.equal(await attr('data-instance'), `${CT}.60`);
  await viewer().press('Home');
  await waitAttr('data-index', (v) => v === '1');
  await viewer().press('PageDown');
  await waitAttr('data-index', (v) => v === '11');
  await viewer().press('ArrowUp');
  await waitAttr('data-index', (v) => v === '10');
  assert.ok(afterWheel >= 3);
  // A finger swiping up in scroll mode (the mode phones start in) goes forward, 12 px an image.
  await viewer().press('s');
  await page.locator('.pane[data-pane="0"] .vp').evaluate((el) => {
    const r = el.getBoundingClientRect();
    const at = (type, y) => el.dispatchEvent(new PointerEvent(type, { pointerId: 7, pointerType: 'touch', isPrimary: true, button: 0, buttons: 1, bubbles: true, clientX: r.left + r.width / 2, clientY: y }));
    const y0 = r.top + r.height * 0.7;
    at('pointerdown', y0);
    for (let i = 1; i <= 10; i++) at('pointermove', y0 - i * 12);
    at('pointerup', y0 - 120);
  });
  await waitAttr('data-index', (v) => v === '20');
  await viewer().press('w');
});

test('window/level by drag, presets, rotate, invert and reset', T, async (t) => {
  if (skip()) return t.skip(skip());
  const b = await box();
  const w0 = await num('data-window-width');
  const c0 = await num('data-window-center');
  await page.mouse.move(b.cx, b.cy);
  await page.mouse.down();
  await page.mouse.move(b.cx + 60, b.cy + 30, { steps: 6 });
  await page.mouse.up();
  await waitAttr('data-window-width', (v) => Number(v) !== 400);
  assert.ok((await num('data-window-width')) > w0, 'dragging right widens the window');
  assert.ok((await num('data-window-center')) > c0, 'dragging down raises the level');
  await page.getByRole('button', { name: /^肺窗/ }).click();
  await waitAttr('data-window-width', (v) => v === '1500');
  assert.equal(await num('data-window-center'), -600);
  await shoot(page, 'viewer-ct-lung-desktop', DESKTOP);
  await page.getByRole('button', { name: /^骨窗/ }).click();
  await waitAttr('data-window-center', (v) => v === '300');
  await viewer().press('r');
  await waitAttr('data-rotation', (v) => v === '90');
  await viewer().press('i');
  await waitAttr('data-invert', (v) => v === 'true');
  await shoot(page, 'viewer-ct-rotated-inverted-desktop', DESKTOP);
  await viewer().press('0');
  await waitAttr('data-invert', (v) => v === 'false');
  assert.equal(await attr('data-rotation'), '0');
  assert.equal(await num('data-window-width'), 400);
});

test('a length measurement on the CT reads in mm', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /^测距/ }).click();
  const b = await box();
  await page.mouse.move(b.cx - 100, b.cy);
  await page.mouse.down();
  await page.mouse.move(b.cx + 100, b.cy, { steps: 8 });
  await page.mouse.up();
  const text = page.locator('.pane[data-pane="0"] svg text', { hasText: /mm/ });
  await text.first().waitFor({ timeout: 10_000 });
  // 200 CSS px across a 350 mm field of view fitted into the viewport's height. The text
  // follows the drag one animation frame late: read until it has caught up.
  const expect = (200 / Math.min(b.width, b.height)) * 350;
  let mm = 0;
  for (let i = 0; i < 40 && !(Math.abs(mm - expect) / expect < 0.1); i++) {
    mm = Number((await text.first().textContent()).match(/([\d.]+)\s*mm/)[1]);
    await page.waitForTimeout(25);
  }
  assert.ok(Math.abs(mm - expect) / expect < 0.1, `measured ${mm} mm, expected about ${expect.toFixed(1)}`);
  await shoot(page, 'viewer-ct-length-desktop', DESKTOP);
  await page.getByRole('button', { name: /^窗宽窗位/ }).click();
});

test('an elliptical ROI reads its mean and SD in HU, an arrow takes its text from a dialog', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /^椭圆 ROI/ }).click();
  const b = await box();
  // Soft tissue between the lungs (40 HU in the phantom, ±8).
  await page.mouse.move(b.cx - 12, b.cy + 60);
  await page.mouse.down();
  await page.mouse.move(b.cx + 12, b.cy + 80, { steps: 5 });
  await page.mouse.up();
  const hu = page.locator('.pane[data-pane="0"] svg text', { hasText: /HU/ });
  await hu.first().waitFor({ timeout: 10_000 });
  const stats = (await page.locator('.pane[data-pane="0"] svg').textContent()) ?? '';
  const mean = Number(/Mean:\s*(-?[\d.]+)\s*HU/.exec(stats)?.[1]);
  assert.ok(Math.abs(mean - 40) < 10, `mean ${mean} HU in: ${stats}`);
  assert.match(stats, /Std Dev:\s*[\d.]+\s*HU/);

  await page.getByRole('button', { name: /^箭头标注/ }).click();
  await page.mouse.move(b.cx + 150, b.cy - 120);
  await page.mouse.down();
  await page.mouse.move(b.cx + 90, b.cy - 40, { steps: 5 });
  await page.mouse.up();
  const dialog = page.getByRole('dialog', { name: '标注文字' });
  await dialog.getByRole('textbox').fill('右肺结节');
  await dialog.getByRole('button', { name: '确定' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.locator('.pane[data-pane="0"] svg text', { hasText: '右肺结节' }).waitFor();
  // Length, ellipse and arrow were each emitted as annotation.add (the viewer keeps its own state).
  await waitAttr('data-annotations', (v) => v === '3');
  await shoot(page, 'viewer-ct-annotations-desktop', DESKTOP);
  await page.getByRole('button', { name: /^窗宽窗位/ }).click();
});

test('the laser pointer shows a red dot where the mouse is', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /^激光笔/ }).click();
  const b = await box();
  await page.mouse.move(b.cx + 40, b.cy + 20, { steps: 3 });
  const dot = page.locator('.pane[data-pane="0"] .laser');
  await dot.waitFor();
  // The pointer is sent at most ~30 times a second: the last position lands within 33 ms.
  let d;
  for (let i = 0; i < 40; i++) {
    d = await dot.boundingBox();
    if (Math.abs(d.x + d.width / 2 - (b.cx + 40)) < 4 && Math.abs(d.y + d.height / 2 - (b.cy + 20)) < 4) break;
    await page.waitForTimeout(25);
  }
  assert.ok(Math.abs(d.x + d.width / 2 - (b.cx + 40)) < 4 && Math.abs(d.y + d.height / 2 - (b.cy + 20)) < 4, `${JSON.stringify(d)} vs ${b.cx + 40},${b.cy + 20}`);
  assert.equal(await dot.textContent(), '我');
  await page.mouse.move(b.x - 20, b.y - 20);
  await dot.waitFor({ state: 'detached' });
  await page.getByRole('button', { name: /^窗宽窗位/ }).click();
});

test('two viewports: the second shows another series and scrolls on its own', T, async (t) => {
  if (skip()) return t.skip(skip());
  const before = await attr('data-instance');
  await page.getByRole('button', { name: /^双屏/ }).click();
  const second = page.locator('.pane[data-pane="1"]');
  await second.locator('canvas').waitFor();
  await page.getByRole('button', { name: /DX 序列/ }).click();
  await second.locator('.ov.tl').waitFor();
  await second.getByRole('note').filter({ hasText: '未校准' }).waitFor();
  const sb = await second.boundingBox();
  await page.mouse.move(sb.x + sb.width / 2, sb.y + sb.height / 2);
  await page.mouse.wheel(0, 100);
  assert.equal(await attr('data-instance'), before, 'the first viewport did not move');
  await shoot(page, 'viewer-two-viewports-desktop', DESKTOP);
  await page.getByRole('button', { name: /^双屏/ }).click();
  await second.waitFor({ state: 'detached' });
});

test('the DR without Pixel Spacing says it is uncalibrated', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /DX 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.3'));
  await page.getByRole('note').filter({ hasText: '未校准' }).waitFor();
  assert.equal(await num('data-window-center'), 1900);
  assert.equal(await num('data-window-width'), 3000);
  await shoot(page, 'viewer-dr-desktop', DESKTOP);
});

test('cine plays the ultrasound clip', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /US 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.2'));
  assert.equal(await attr('data-total'), String(FRAMES));
  assert.equal(await attr('data-frame'), '1');
  await page.getByRole('button', { name: /^电影播放/ }).click();
  await waitAttr('data-frame', (v) => Number(v) >= 5, 10_000);
  await shoot(page, 'viewer-us-cine-desktop', DESKTOP);
  await page.getByRole('button', { name: /^电影播放/ }).click();
  await waitAttr('data-cine', (v) => v === 'false');
  // A frame already being drawn when cine stopped may still land (seen on a loaded machine).
  await page.waitForTimeout(300);
  const f = await attr('data-frame');
  await page.waitForTimeout(500);
  assert.equal(await attr('data-frame'), f, 'stopped');
  await shoot(page, 'viewer-us-phone', PHONE);
  await page.setViewportSize(DESKTOP);
});

test('the study opened again in the same session comes from memory, not the network', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.getByRole('button', { name: /CT 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.1'));
  await waitAttr('data-loaded', (v) => v === String(SLICES), 30_000);
  const fetched = [];
  const onRequest = (r) => {
    if (/\/dicom-web\/.*\/(frames|metadata)/.test(r.url())) fetched.push(r.url());
  };
  page.on('request', onRequest);
  await page.getByRole('link', { name: '← 返回工作列表' }).click();
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.goBack();
  await waitAttr('data-instance', (v) => v.length > 0, 30_000);
  await page.getByRole('button', { name: /CT 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.1'));
  await viewer().press('End');
  await waitAttr('data-index', (v) => v === String(SLICES));
  page.off('request', onRequest);
  // The DR (shown first) and the CT were in Cornerstone's cache and their metadata in memory.
  assert.deepEqual(fetched, []);
});

test("reloaded, the page takes the study's frames from the browser's HTTP cache", T, async (t) => {
  if (skip()) return t.skip(skip());
  // The CT's frames were all fetched above (private, max-age; docs/dicomweb.md). A reload
  // empties Cornerstone's memory; what comes over the network is what the HTTP cache lacked.
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Network.enable');
  const seen = [];
  cdp.on('Network.responseReceived', (e) => {
    const m = /\/dicom-web\/.*\/(frames|metadata)/.exec(e.response.url);
    if (m) seen.push({ what: m[1], status: e.response.status, cached: e.response.fromDiskCache || e.response.fromPrefetchCache || false });
  });
  await page.reload();
  await waitAttr('data-instance', (v) => v.length > 0, 30_000);
  await page.getByRole('button', { name: /CT 序列/ }).click();
  await waitAttr('data-series', (v) => v.endsWith('.1.1'));
  await waitAttr('data-loaded', (v) => v === String(SLICES), 30_000);
  await cdp.detach();
  const frames = seen.filter((s) => s.what === 'frames');
  const fromNetwork = frames.filter((s) => !s.cached);
  t.diagnostic(`frames: ${frames.length} read, ${fromNetwork.length} over the network; metadata: ${seen.filter((s) => s.what === 'metadata').map((s) => s.status).join(', ')}`);
  assert.ok(frames.length >= SLICES, `the reloaded page read the CT's ${SLICES} frames (${frames.length})`);
  assert.deepEqual(fromNetwork, [], 'every frame came from the HTTP cache');
  // Metadata is revalidated (it grows as instances arrive): 304, or 200 from a changed series.
  for (const m of seen.filter((s) => s.what === 'metadata')) assert.ok(m.status === 304 || m.status === 200 || m.cached, `metadata ${m.status}`);
});

test('no CSP violation and no uncaught error', T, (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});
