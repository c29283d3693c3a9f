// The clinic's upload screen at its edges, in real headless Chromium against bin/sanping: a
// large file half sent when the page is reloaded continues from where the server stopped
// (bytes counted at a throttling proxy), files dropped on the drop zone are queued and stored,
// and a file larger than the server takes is failed at once with its reason while the page
// goes on working. Screenshots: web/test-output/clinic-edge-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, shoot, makeDicom, DESKTOP } from './server.mjs';

const PW = 'clinic-' + randomUUID().slice(0, 8);
const T = { timeout: 60_000 };

let server;
let meter;
let browser;
let page;
let dir;
const pageErrors = [];

/**
 * startMeter is a TCP proxy between the browser and the server that counts the bytes it
 * forwards to the server (all of them, and those of connections carrying a PATCH) and, when
 * rate (bytes/s) is set, reads from the browser no faster than that: a slow uplink whose
 * every byte that reached the server is known. (startProxy in server.mjs cuts links but
 * neither throttles nor counts.)
 */
async function startMeter(target) {
  const { port: targetPort, hostname } = new URL(target);
  const sockets = new Set();
  const m = { rate: Infinity, forwarded: 0, patchBytes: 0 };
  const srv = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), hostname);
    sockets.add(client);
    sockets.add(upstream);
    let patch = false;
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk) => {
      // A request line starts a new request on this (keep-alive) connection.
      const head = chunk.subarray(0, 8).toString('latin1');
      if (/^[A-Z]+ \//.test(head)) patch = head.startsWith('PATCH ');
      m.forwarded += chunk.length;
      if (patch) m.patchBytes += chunk.length;
      upstream.write(chunk);
      if (Number.isFinite(m.rate)) {
        client.pause();
        setTimeout(() => client.resume(), (chunk.length / m.rate) * 1000);
      }
    });
    upstream.pipe(client);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  m.base = `http://127.0.0.1:${srv.address().port}`;
  m.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => srv.close(r));
  };
  return m;
}

before(async () => {
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
  });
  meter = await startMeter(server.base);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-edges-'));
  browser = await launchBrowser();
  if (!browser) return;
  page = await browser.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  // Reloading while a file is under way: the page asks first (beforeunload); the user says leave.
  page.on('dialog', (d) => void d.accept());
  await page.goto(meter.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('lan.xiuying');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/clinic\/upload$/);
}, { timeout: 60_000 });

after(async () => {
  await browser?.close();
  await meter?.close();
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

const skip = () => !page && 'no Chromium at /usr/bin/chromium';

/** A fresh upload screen (a new queue: the counts below are this test's alone). */
async function openUpload() {
  await page.goto(meter.base + '/clinic/upload');
  await page.getByRole('heading', { name: '上传影像' }).waitFor();
}

/** settled waits for the overall bar to finish its animation (the screenshot shows the end state). */
async function settled() {
  await page.waitForFunction(() => {
    const bar = document.querySelector('.overall .el-progress-bar__outer');
    const fill = bar?.querySelector('.el-progress-bar__inner');
    if (!bar || !fill) return true;
    return Math.abs(fill.getBoundingClientRect().width - (bar.getBoundingClientRect().width * parseFloat(fill.style.width)) / 100) < 1;
  });
}

const filesInput = () => page.locator('input[type=file][multiple]:not([webkitdirectory])');

async function instances(study) {
  const res = await page.request.get(`${server.base}/dicom-web/studies/${study}/instances`, { headers: { Accept: 'application/dicom+json' } });
  if (res.status() === 204 || res.status() === 404) return [];
  assert.equal(res.status(), 200);
  return res.json();
}

const STUDY_BIG = '1.2.826.0.1.3680043.10.78.1';
const STUDY_DROP = '1.2.826.0.1.3680043.10.78.2';
const STUDY_SMALL = '1.2.826.0.1.3680043.10.78.3';

test('a large file half sent when the page is reloaded continues from where it stopped', T, async (t) => {
  if (skip()) return t.skip(skip());
  // 2048 x 2048 x 16 bits: a pixel data element of 8 MiB, as a DR image.
  const file = path.join(dir, 'DR0001.dcm');
  fs.writeFileSync(file, makeDicom({ studyUID: STUDY_BIG, seriesUID: STUDY_BIG + '.1', sopUID: STUDY_BIG + '.1.1', patientName: 'Huang^Mei=黄^梅', patientId: 'LS0101',
    modality: 'DX', description: '胸部正位', rows: 2048, cols: 2048 }));
  const size = fs.statSync(file).size;
  await openUpload();

  // A 1 MB/s uplink: the file takes about 8 s, the reload lands after about 1.2 MB.
  const startBytes = meter.forwarded;
  meter.rate = 1_000_000;
  meter.patchBytes = 0;
  await filesInput().setInputFiles(file);
  await page.getByText('正在上传').waitFor();
  const t0 = Date.now();
  while (meter.patchBytes < 1_200_000) {
    assert.ok(Date.now() - t0 < 15_000, `PATCH bytes stuck at ${meter.patchBytes}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const atReload = meter.patchBytes;
  await page.reload();
  await page.getByRole('heading', { name: '上传影像' }).waitFor();
  assert.equal(await page.getByText('正在上传').count(), 0, 'the reloaded page starts with an empty queue');
  t.diagnostic(`reloaded after ${atReload} PATCH bytes reached the server`);

  // The same file picked again: tus-js-client finds its upload under the fingerprint and asks
  // the server where it stands (HEAD), then sends the rest.
  meter.rate = 4_000_000;
  const afterReload = meter.forwarded;
  await filesInput().setInputFiles(file);
  await page.getByText('上传结束').waitFor({ timeout: 30_000 });
  meter.rate = Infinity;
  await page.getByText('已存储 1').waitFor();
  await page.getByText('失败 0').waitFor();
  const total = meter.forwarded - startBytes;
  const second = meter.forwarded - afterReload;
  t.diagnostic(`file ${size} bytes; forwarded ${total} in all, ${second} after the reload`);
  assert.ok(second < size - 1_000_000, `after the reload ${second} bytes went, not the whole file again (${size})`);
  assert.ok(total < 1.6 * size, `${total} bytes forwarded for a file of ${size}: the upload resumed instead of starting over`);

  const stored = await instances(STUDY_BIG);
  assert.equal(stored.length, 1, 'the instance is stored once');
  await settled();
  await shoot(page, 'clinic-edge-resumed-desktop', DESKTOP);
});

test('files dropped on the drop zone are queued and stored', T, async (t) => {
  if (skip()) return t.skip(skip());
  await openUpload();
  const files = [1, 2, 3].map((i) => ({
    name: `DROP${i}.dcm`,
    b64: makeDicom({ studyUID: STUDY_DROP, seriesUID: STUDY_DROP + '.1', sopUID: `${STUDY_DROP}.1.${i}`, patientName: 'Lu^Ping=陆^萍', patientId: 'LS0102', instanceNumber: i }).toString('base64'),
  }));
  // A drop of plain files, as from a file manager. (A dropped folder reaches the page through
  // DataTransferItem.webkitGetAsEntry(), backed by the real file system: a page cannot make
  // one, so folder drops are not driven here; clinic.test.mjs picks a folder instead.)
  const dt = await page.evaluateHandle((list) => {
    const d = new DataTransfer();
    for (const f of list) {
      const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
      d.items.add(new File([bytes], f.name, { type: 'application/dicom', lastModified: Date.UTC(2026, 2, 1) }));
    }
    return d;
  }, files);
  const zone = page.getByRole('region', { name: '拖放上传区' });
  await zone.dispatchEvent('dragenter', { dataTransfer: dt });
  await zone.dispatchEvent('dragover', { dataTransfer: dt });
  assert.match(await zone.getAttribute('class'), /\bover\b/, 'the zone shows that a drop is welcome');
  await shoot(page, 'clinic-edge-dragover-desktop', DESKTOP);
  await zone.dispatchEvent('drop', { dataTransfer: dt });
  await page.getByText('上传结束').waitFor({ timeout: 20_000 });
  await page.getByText('已存储 3').waitFor();
  const list = page.getByRole('list', { name: '文件列表' });
  for (const f of files) await list.getByRole('listitem').filter({ hasText: f.name }).getByText('已存储').waitFor();
  assert.doesNotMatch(await zone.getAttribute('class'), /\bover\b/);
  assert.equal((await instances(STUDY_DROP)).length, 3);
  await settled();
  await shoot(page, 'clinic-edge-dropped-desktop', DESKTOP);
});

test('a file larger than the server takes fails at once with its reason; the page goes on', T, async (t) => {
  if (skip()) return t.skip(skip());
  // The server's largest upload (its -max-body, 8 GiB unless set otherwise).
  const opts = await fetch(`${server.base}/api/uploads/`, { method: 'OPTIONS' });
  const max = Number(opts.headers.get('Tus-Max-Size'));
  assert.ok(max > 0, 'the server says its Tus-Max-Size');
  // 2 GiB + 1 byte, or one byte over the server's limit when that is more: a sparse file (no
  // disk used) that starts as a real DICOM file, so only its size is wrong. Playwright hands
  // a local browser the path, so a file of any size can be picked.
  const size = Math.max(2 ** 31 + 1, max + 1);
  const big = path.join(dir, 'CT-huge.dcm');
  fs.writeFileSync(big, makeDicom({ studyUID: STUDY_SMALL + '.9', seriesUID: STUDY_SMALL + '.9.1', sopUID: STUDY_SMALL + '.9.1.1' }));
  fs.truncateSync(big, size);
  t.diagnostic(`Tus-Max-Size ${max}; picked a sparse file of ${size} bytes`);
  const maxText = (max / 2 ** 30).toFixed(1) + ' GB';

  await openUpload();
  let creates = 0;
  const count = (req) => {
    if (req.method() === 'POST' && req.url().includes('/api/uploads/')) creates++;
  };
  page.on('request', count);
  const t0 = Date.now();
  await filesInput().setInputFiles(big);
  const row = page.getByRole('list', { name: '文件列表' }).getByRole('listitem').filter({ hasText: 'CT-huge.dcm' });
  await row.getByText(`文件太大：服务器最多接收 ${maxText}。`).waitFor({ timeout: 5_000 });
  const shown = Date.now() - t0;
  t.diagnostic(`too-large reason shown ${shown} ms after the pick`);
  await row.getByText('失败', { exact: true }).waitFor();
  await page.getByText('上传结束').waitFor();
  await page.getByText('失败 1').waitFor();
  assert.equal(creates, 0, 'not a byte of it was sent');
  assert.ok(shown < 3000, `shown after ${shown} ms`);
  // The page answers at once (nothing reads the whole file).
  const r0 = Date.now();
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  assert.ok(Date.now() - r0 < 1000, 'the page draws');

  // A small file picked after it goes through.
  const small = path.join(dir, 'CT0001.dcm');
  fs.writeFileSync(small, makeDicom({ studyUID: STUDY_SMALL, seriesUID: STUDY_SMALL + '.1', sopUID: STUDY_SMALL + '.1.1', patientName: 'Tan^Jun=覃^军', patientId: 'LS0103' }));
  await filesInput().setInputFiles(small);
  await page.getByText('已存储 1').waitFor({ timeout: 20_000 });
  await page.getByText('上传结束').waitFor();
  page.off('request', count);
  assert.equal(creates, 1, 'only the small file was sent');
  assert.equal((await instances(STUDY_SMALL)).length, 1);
  assert.equal((await instances(STUDY_SMALL + '.9')).length, 0);
  await settled();
  await shoot(page, 'clinic-edge-too-large-desktop', DESKTOP);
});
