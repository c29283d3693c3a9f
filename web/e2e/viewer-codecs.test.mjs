// Every transfer syntax the store keeps, decoded in the browser by the viewer's WASM codecs
// (dicom-image-loader's workers, under the app's Content-Security-Policy): one CT slice stored
// uncompressed and compressed losslessly by DCMTK (JPEG lossless, JPEG-LS, RLE) and GDCM
// (JPEG 2000), and an 8-bit
// ultrasound frame uncompressed and as baseline JPEG. The viewer asks for frames with
// transfer-syntax=* (it gets the stored bytes), so each series shows what its codec decoded:
// the lossless ones must draw the uncompressed slice's pixels exactly. Screenshot:
// web/test-output/viewer-codecs.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser, shoot, DESKTOP, dicomImage, stowMany, tokenSecret, requestConsultation } from './server.mjs';

const PW = 'codecs-' + randomUUID().slice(0, 8);
const ROOT = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
const STUDY = `${ROOT}.1`;
const PATIENT = '韦秀梅';

// DCMTK's tools and what they write (PS3.5 Annex A / PS3.6 transfer syntax UIDs).
const VARIANTS = [
  { key: 'ct-raw', kind: 'ct', tool: null, ts: '1.2.840.10008.1.2.1' },
  { key: 'ct-jpeg-lossless', kind: 'ct', tool: ['dcmcjpeg', '+e1'], ts: '1.2.840.10008.1.2.4.70', like: 'ct-raw' },
  { key: 'ct-jpeg-ls', kind: 'ct', tool: ['dcmcjpls', '+el'], ts: '1.2.840.10008.1.2.4.80', like: 'ct-raw' },
  { key: 'ct-rle', kind: 'ct', tool: ['dcmcrle'], ts: '1.2.840.10008.1.2.5', like: 'ct-raw' },
  // DCMTK has no JPEG 2000 encoder; GDCM's (OpenJPEG) writes it.
  { key: 'ct-j2k', kind: 'ct', tool: ['gdcmconv', '--j2k'], ts: '1.2.840.10008.1.2.4.90', like: 'ct-raw' },
  { key: 'us-raw', kind: 'us', tool: null, ts: '1.2.840.10008.1.2.1' },
  { key: 'us-jpeg-baseline', kind: 'us', tool: ['dcmcjpeg', '+eb', '+q', '95'], ts: '1.2.840.10008.1.2.4.50', like: 'us-raw', lossy: true },
];

let server;
let browser;
let page;
let consultation;
const pageErrors = [];
const cspViolations = [];
const haveDCMTK = (() => {
  try {
    execFileSync('dcmcjpls', ['--version'], { stdio: 'ignore' });
    execFileSync('gdcmconv', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI) throw new Error('DCMTK and GDCM are needed (apt-get install dcmtk libgdcm-tools)');
    return false;
  }
})();

/** transferSyntax reads a Part 10 file's (0002,0010) with dcmdump. */
function transferSyntax(file) {
  const out = execFileSync('dcmdump', ['-M', '-Un', '+P', '0002,0010', file]).toString();
  return /\[([\d.]+)\]/.exec(out)?.[1] ?? '';
}

before(async () => {
  if (!haveDCMTK) return;
  let token = '';
  server = await startServer((cli) => {
    cli(['site', 'add', '-kind', 'hospital', 'dahua', '大化县人民医院']);
    cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
    cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
    cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', 'wei.dongping'], PW + '\n');
    token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', 'codecs']));
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-codecs-'));
  const files = [];
  VARIANTS.forEach((v, i) => {
    const series = `${STUDY}.${i + 1}`;
    const raw = dicomImage({ kind: v.kind, study: STUDY, series, instance: `${series}.1`, number: 30, slices: 60, size: 256, frames: 1,
      patientName: PATIENT, patientId: 'LS-0777', seriesNumber: i + 1, description: v.key });
    const src = path.join(tmp, `${v.key}-raw.dcm`);
    fs.writeFileSync(src, raw);
    if (!v.tool) {
      files.push(raw);
      return;
    }
    const dst = path.join(tmp, `${v.key}.dcm`);
    execFileSync(v.tool[0], [...v.tool.slice(1), src, dst]);
    assert.equal(transferSyntax(dst), v.ts, `${v.tool[0]} wrote ${v.key}`);
    files.push(fs.readFileSync(dst));
  });
  await stowMany(server.base, token, files);
  fs.rmSync(tmp, { recursive: true, force: true });

  consultation = await requestConsultation(server.base, 'lan.xiuying', PW, {
    patient: { id: 'LS-0777', name: PATIENT, sex: 'M', birthDate: '19580306' }, study: STUDY, question: '压缩影像',
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

const T = { timeout: 120_000 };
const skip = () => (!haveDCMTK && 'no DCMTK or GDCM (apt-get install dcmtk libgdcm-tools)') || (!page && 'no Chromium at /usr/bin/chromium');
const viewer = () => page.locator('.dicom-viewer');

/**
 * pixels reads the main viewport's canvas as grey levels on a 64 x 64 grid, once the viewer
 * says it shows series `series` (data-series after IMAGE_RENDERED) and the canvas is drawn.
 */
async function pixels(series) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const shown = await viewer().getAttribute('data-series', { timeout: 1000 }).catch(() => null);
    const failed = await page.getByText('影像加载失败').count();
    assert.equal(failed, 0, `the viewer failed to load ${series}`);
    if (shown === series) break;
    if (Date.now() > deadline) throw new Error(`the viewer shows ${shown}, not ${series}`);
    await page.waitForTimeout(50);
  }
  await page.waitForTimeout(400); // Cornerstone draws on the next animation frame
  return page.evaluate(() => {
    const src = document.querySelector('.pane[data-pane="0"] canvas');
    const n = 64;
    const c = document.createElement('canvas');
    c.width = c.height = n;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(src, 0, 0, n, n);
    const d = g.getImageData(0, 0, n, n).data;
    const out = [];
    for (let i = 0; i < d.length; i += 4) out.push(Math.round((d[i] + d[i + 1] + d[i + 2]) / 3));
    return out;
  });
}

const meanDiff = (a, b) => a.reduce((s, x, i) => s + Math.abs(x - b[i]), 0) / a.length;

test('each stored transfer syntax decodes in the browser to the same image', T, async (t) => {
  if (skip()) return t.skip(skip());
  await page.goto(server.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('wei.dongping');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/doctor\/worklist$/);
  await page.goto(`${server.base}/doctor/consultations/${consultation}`);
  await page.getByRole('heading', { name: PATIENT }).waitFor();
  await viewer().getByRole('button', { name: /ct-raw/ }).waitFor({ timeout: 30_000 });
  const seen = {};
  for (const [i, v] of VARIANTS.entries()) {
    const series = `${STUDY}.${i + 1}`;
    await viewer().getByRole('button', { name: new RegExp(`序列 ${v.key}，`) }).click();
    seen[v.key] = await pixels(series);
    const spread = Math.max(...seen[v.key]) - Math.min(...seen[v.key]);
    assert.ok(spread > 60, `${v.key}: the canvas shows an image (grey levels spread ${spread})`);
    assert.equal(await page.locator('.thumb img').evaluateAll((imgs) => imgs.filter((i) => i.complete && i.naturalWidth === 0).length), 0,
      'no broken thumbnail: one the server cannot render is a placeholder');
    if (v.like) {
      const diff = meanDiff(seen[v.key], seen[v.like]);
      t.diagnostic(`${v.key} (${v.ts}) against ${v.like}: mean difference ${diff.toFixed(3)} / 255`);
      if (v.lossy) assert.ok(diff < 4, `${v.key} differs from ${v.like} by ${diff.toFixed(2)}`);
      else assert.equal(diff, 0, `${v.key} draws the uncompressed slice's pixels`);
    }
    if (v.key === 'ct-jpeg-ls') await shoot(page, 'viewer-codecs', DESKTOP);
  }
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});
