// Browser upload over an emulated 4G uplink (issue 13's speed target): a clinic user uploads a
// CT series of FILES files of SIZE bytes in headless Chromium against bin/sanping, with
// Chromium's network emulation at 10 Mbit/s down, 3 Mbit/s up, 80 ms latency. It prints the
// uplink utilisation: bytes sent / (link rate x time), target >= 85%.
//
//   make web && make build && node bench/web-upload.mjs            # 300 x 1 MiB: about 14 minutes
//   FILES=60 node bench/web-upload.mjs                              # a quicker look
//   FILES=300 SIZE=524288 UP_MBIT=3 node bench/web-upload.mjs       # 512x512x2 CT slices
//
// Bytes sent are counted by a TCP proxy between browser and server (everything the browser
// sends: file bytes, tus and HTTP headers, the app's other requests); time runs from picking
// the folder to "上传结束" on the screen. Chromium's emulated throughput is shared by all of a
// page's requests, so several files in flight cannot exceed the link.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, makeDicom } from '../web/e2e/server.mjs';

const FILES = Number(process.env.FILES ?? 300);
const SIZE = Number(process.env.SIZE ?? 1 << 20);
const UP = Number(process.env.UP_MBIT ?? 3) * 1e6; // bit/s
const DOWN = Number(process.env.DOWN_MBIT ?? 10) * 1e6;
const LATENCY = Number(process.env.LATENCY_MS ?? 80);
const PW = 'bench-' + randomUUID().slice(0, 8);

/** A proxy that counts the bytes the browser sends (its uplink). */
async function countingProxy(target) {
  const { port: tp } = new URL(target);
  let up = 0;
  const srv = net.createServer((c) => {
    const s = net.connect(Number(tp), '127.0.0.1');
    c.on('data', (d) => (up += d.length));
    c.pipe(s);
    s.pipe(c);
    const end = () => {
      c.destroy();
      s.destroy();
    };
    c.on('error', end).on('close', end);
    s.on('error', end).on('close', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${srv.address().port}`, bytes: () => up, reset: () => (up = 0), close: () => srv.close() };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-bench-upload-'));
const series = path.join(dir, 'CT');
fs.mkdirSync(series);
const study = '1.2.826.0.1.3680043.10.99.' + Date.now();
for (let i = 1; i <= FILES; i++) {
  fs.writeFileSync(path.join(series, `IM${String(i).padStart(4, '0')}`), makeDicom({
    studyUID: study, seriesUID: study + '.1', sopUID: `${study}.1.${i}`, instanceNumber: i, patientName: 'Bench^Upload=测试', patientId: 'BENCH', size: SIZE,
  }));
}
const total = FILES * SIZE;

const server = await startServer((cli) => {
  cli(['site', 'add', '-kind', 'hospital', 'dahua', '大化县人民医院']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
});
const proxy = await countingProxy(server.base);
const browser = await launchBrowser();
if (!browser) throw new Error('no Chromium');
try {
  const page = await browser.context.newPage();
  await page.goto(proxy.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('lan.xiuying');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/clinic\/upload$/);
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: LATENCY, downloadThroughput: DOWN / 8, uploadThroughput: UP / 8 });

  proxy.reset();
  const t0 = Date.now();
  await page.locator('input[webkitdirectory]').setInputFiles(series);
  let last = '';
  const timer = setInterval(async () => {
    const s = await page.locator('.bytes').textContent().catch(() => '');
    if (s && s !== last) {
      last = s;
      const secs = (Date.now() - t0) / 1000;
      process.stderr.write(`\r${secs.toFixed(0)} s  ${s}    `);
    }
  }, 2000);
  await page.getByText('上传结束').waitFor({ timeout: 0 });
  clearInterval(timer);
  const secs = (Date.now() - t0) / 1000;
  const sent = proxy.bytes();
  const stored = (await page.locator('.counts li').allTextContents()).join(', ');
  const util = (sent * 8) / (UP * secs);
  const payload = (total * 8) / (UP * secs);
  process.stderr.write('\n');
  console.log(`files: ${FILES} x ${SIZE} bytes = ${(total / 1e6).toFixed(1)} MB; link ${DOWN / 1e6}/${UP / 1e6} Mbit/s, ${LATENCY} ms`);
  console.log(`outcome: ${stored}`);
  console.log(`time: ${secs.toFixed(1)} s; bytes the browser sent: ${(sent / 1e6).toFixed(1)} MB`);
  console.log(`uplink utilisation: ${(util * 100).toFixed(1)}% (file bytes alone: ${(payload * 100).toFixed(1)}%)`);
} finally {
  await browser.close();
  proxy.close();
  await server.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
