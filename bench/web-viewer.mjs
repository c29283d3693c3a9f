// The diagnostic viewer (issue 14's speed targets) in headless Chromium against bin/sanping,
// with a 300-slice 512x512 16-bit CT:
//   (a) first image on screen after opening the study, loopback            target <= 1 s
//   (b) the same behind an emulated 4G link, 10 Mbit/s, 80 ms RTT           target <= 3 s
//   (c) the whole series in Cornerstone's cache, loopback                   target <= 8 s
//   (d) scroll rate through the loaded series, images rendered per second   target >= 25
// "Opening" is the doctor's click on the patient in the worklist (a route change: the
// consultation's chunk and the viewer's are fetched then); "on screen" is the viewer's first
// render (the root element gets data-instance after Cornerstone's IMAGE_RENDERED). Each run
// starts with the browser's HTTP cache and the page emptied (a fresh worklist load), so the
// viewer's code, the metadata and the frames all come over the link.
// The 4G link is web/e2e/server.mjs startProxy: a token bucket per direction and a one-way
// delay in node timers (no netem), between the browser and the server.
//
//   make web && make build && node bench/web-viewer.mjs
//   RUNS=7 SLICES=300 node bench/web-viewer.mjs
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, dicomImage, stowMany, tokenSecret, startProxy, requestConsultation } from '../web/e2e/server.mjs';

const RUNS = Number(process.env.RUNS ?? 5);
const SLICES = Number(process.env.SLICES ?? 300);
const RATE = Number(process.env.DOWN_MBIT ?? 10) * 1e6;
const RTT = Number(process.env.RTT_MS ?? 80);
const PW = 'bench-' + randomUUID().slice(0, 8);

let token = '';
const server = await startServer((cli) => {
  cli(['site', 'add', '-kind', 'hospital', 'dahua', '大化县人民医院']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
  cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
  token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', 'bench-CT']));
});
let browser;
let proxy;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, unit = 'ms', d = 0) => `median ${median(xs).toFixed(d)} ${unit} (min ${Math.min(...xs).toFixed(d)}, max ${Math.max(...xs).toFixed(d)}; ${xs.map((x) => x.toFixed(d)).join(', ')})`;

try {
  const root = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
  const study = `${root}.1`;
  const series = `${study}.1`;
  const files = [];
  for (let n = 1; n <= SLICES; n++) files.push(dicomImage({ kind: 'ct', study, series, instance: `${series}.${n}`, number: n, slices: SLICES, patientName: '测试', patientId: 'B1' }));
  const t0 = performance.now();
  await stowMany(server.base, token, files);
  console.log(`stored ${SLICES} slices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const id = await requestConsultation(server.base, 'lan.xiuying', PW, {
    patient: { id: 'B1', name: '测试', sex: 'F', birthDate: '19600101' }, study, question: '右肺结节？',
  });

  // What the server says about caching the viewer's reads.
  const login = await fetch(`${server.base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'wei.dongping', password: PW }) });
  const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  for (const [what, path, accept] of [
    ['metadata', `/dicom-web/studies/${study}/series/${series}/metadata`, 'application/dicom+json'],
    ['frame', `/dicom-web/studies/${study}/series/${series}/instances/${series}.1/frames/1`, 'multipart/related; type=application/octet-stream; transfer-syntax=*'],
  ]) {
    const res = await fetch(server.base + path, { headers: { Cookie: cookie, Accept: accept } });
    const body = await res.arrayBuffer();
    console.log(`${what}: ${res.status}, ${body.byteLength} bytes, Cache-Control ${res.headers.get('cache-control') ?? '(none)'}, ETag ${res.headers.get('etag') ?? '(none)'}, Last-Modified ${res.headers.get('last-modified') ?? '(none)'}, Content-Encoding ${res.headers.get('content-encoding') ?? '(none)'}`);
  }

  proxy = await startProxy(server.base, { rateBitsPerSecond: RATE, delayMs: RTT / 2 });
  browser = await launchBrowser();
  if (!browser) throw new Error('no Chromium at /usr/bin/chromium');

  /** open signs in at base, loads the worklist, then times the click to the first image. */
  async function open(base, { wholeSeries = false, scroll = false, timeout = 120_000 } = {}) {
    const page = await browser.context.newPage();
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.clearBrowserCache');
    await page.goto(base + '/doctor/worklist');
    const signIn = page.getByRole('textbox', { name: '用户名' });
    await Promise.race([signIn.waitFor({ timeout: 60_000 }), page.locator('[data-ready="true"]').waitFor({ timeout: 60_000 })]);
    if (await signIn.isVisible()) {
      await signIn.fill('wei.dongping');
      await page.getByLabel('密码', { exact: true }).fill(PW);
      await page.getByRole('button', { name: '登录', exact: true }).click();
    }
    await page.waitForURL(/\/doctor\/worklist$/, { timeout: 60_000 });
    if (process.env.TRACE) console.log('worklist loaded');
    await page.locator('[data-ready="true"] .rows article').first().waitFor({ timeout: 60_000 });
    const link = page.locator(`a[href="/doctor/consultations/${id}"]`).first();
    const start = await page.evaluate(() => performance.now());
    // Timed in the page: a MutationObserver notes when the viewer first names an instance
    // (after its first render) and when every image of the series is in the cache.
    const marks = page.evaluate(
      ([whole, timeout]) =>
        new Promise((resolve, reject) => {
          const out = {};
          const check = () => {
            const v = document.querySelector('.dicom-viewer');
            if (!v) return;
            if (!out.first && v.getAttribute('data-instance')) out.first = performance.now();
            const total = Number(v.getAttribute('data-total'));
            if (!out.all && total && Number(v.getAttribute('data-loaded')) === total) out.all = performance.now();
            if (out.first && (!whole || out.all)) {
              obs.disconnect();
              resolve(out);
            }
          };
          const obs = new MutationObserver(check);
          obs.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-instance', 'data-loaded'] });
          setTimeout(() => reject(new Error(`timed out: ${JSON.stringify(out)}`)), timeout);
        }),
      [wholeSeries, timeout],
    );
    const logs = [];
    page.on('console', (msg) => logs.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => logs.push(`pageerror: ${err}`));
    page.on('requestfailed', (r) => logs.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
    const pending = new Map();
    page.on('request', (r) => pending.set(r, performance.now()));
    page.on('requestfinished', (r) => pending.delete(r));
    page.on('requestfailed', (r) => pending.delete(r));
    await link.click();
    const m = await marks.catch(async (err) => {
      await page.screenshot({ path: '/tmp/web-viewer-timeout.png' }).catch(() => undefined);
      const text = await page.locator('.study').innerText().catch(() => '(no study section)');
      const open = [...pending].map(([r]) => `pending: ${r.url().replace(/^https?:\/\/[^/]+/, '').slice(0, 120)}`);
      await page.close();
      throw new Error(`${err.message}\n${text.slice(-200)}\n${logs.slice(-30).join('\n')}\n${open.join('\n')}`);
    });
    const res = { first: m.first - start, all: m.all ? m.all - start : undefined };
    if (process.env.TRACE) {
      // Where the time went: each request's start and end after the click (ms).
      const entries = await page.evaluate((t0) => performance.getEntriesByType('resource').filter((e) => e.startTime >= t0)
        .map((e) => `${(e.startTime - t0).toFixed(0).padStart(5)} ${(e.responseEnd - t0).toFixed(0).padStart(5)} ${String(e.transferSize).padStart(8)} ${e.name.replace(/^https?:\/\/[^/]+/, '').slice(0, 110)}`), start);
      console.log(entries.slice(0, 40).join('\n'));
    }
    if (scroll) res.rate = await scrollRate(page);
    await page.close();
    return res;
  }

  /** scrollRate presses ArrowDown each time the previous image has rendered, for 3 s. */
  async function scrollRate(page) {
    await page.locator('.dicom-viewer').focus();
    return page.evaluate(
      () =>
        new Promise((resolve) => {
          const v = document.querySelector('.dicom-viewer');
          const total = Number(v.getAttribute('data-total'));
          let dir = 1;
          let n = 0;
          const t0 = performance.now();
          const press = () => {
            const i = Number(v.getAttribute('data-index'));
            if (i >= total) dir = -1;
            if (i <= 1) dir = 1;
            v.dispatchEvent(new KeyboardEvent('keydown', { key: dir > 0 ? 'ArrowDown' : 'ArrowUp', bubbles: true }));
          };
          const obs = new MutationObserver(() => {
            n++;
            if (performance.now() - t0 > 3000) {
              obs.disconnect();
              resolve((n / (performance.now() - t0)) * 1000);
              return;
            }
            press();
          });
          obs.observe(v, { attributes: true, attributeFilter: ['data-index'] });
          press();
        }),
    );
  }

  const a = [];
  const c = [];
  const d = [];
  for (let run = 0; run < (process.env.ONLY_4G ? 0 : RUNS); run++) {
    const res = await open(server.base, { wholeSeries: true, scroll: true });
    a.push(res.first);
    c.push(res.all);
    d.push(res.rate);
    console.log(`loopback run ${run + 1}: first image ${res.first.toFixed(0)} ms, whole series ${res.all.toFixed(0)} ms, scroll ${res.rate.toFixed(1)} images/s`);
  }
  const b = [];
  const stalls = [];
  for (let run = 0; run < RUNS; run++) {
    // Each run on new connections: the last run's page closed with frames in flight, and a
    // connection it left behind once stalled the next run's first frame (issue noted in
    // bench/README.md).
    await proxy.cut(50);
    const before = proxy.bytes.down;
    let res;
    try {
      res = await open(proxy.base, { timeout: 30_000 });
    } catch (err) {
      stalls.push(err.message.split('\n').filter((l) => l.startsWith('pending')).join('; ') || err.message.split('\n')[0]);
      console.log(`4G run ${run + 1}: no first image within 30 s (${stalls.at(-1)})`);
      continue;
    }
    b.push(res.first);
    console.log(`4G run ${run + 1}: first image ${res.first.toFixed(0)} ms (${((proxy.bytes.down - before) / 1e6).toFixed(1)} MB down through the link by then and while closing)`);
  }
  console.log(`\n${SLICES} slices 512x512x16; ${RUNS} runs each`);
  if (a.length) console.log(`(a) first image, loopback: ${fmt(a)}; target <= 1000 ms`);
  if (b.length) console.log(`(b) first image, ${RATE / 1e6} Mbit/s ${RTT} ms RTT: ${fmt(b)}; target <= 3000 ms`);
  if (stalls.length) console.log(`(b) ${stalls.length} of ${RUNS} runs had no first image within 30 s`);
  if (c.length) console.log(`(c) whole series cached, loopback: ${fmt(c)}; target <= 8000 ms`);
  if (d.length) console.log(`(d) scroll rate, loaded series: ${fmt(d, 'images/s', 1)}; target >= 25`);
} finally {
  await browser?.close();
  await proxy?.close();
  await server.stop();
}
