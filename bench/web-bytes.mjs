// Bytes a browser downloads to open a 300-slice CT (issue 16's target: <= 0.55x of before),
// in headless Chromium against bin/sanping, the whole series loaded by the viewer:
//   before   the series stored native, every frame and the metadata sent uncoded: the
//            decoded body sizes, which is what the server sent before content coding
//   coded    the same native series, frames and metadata content-coded (gzip here: Chromium
//            offers zstd and br only over HTTPS)
//   station  the same slices uploaded by `sanping-station upload` (JPEG-LS lossless on the
//            way, stored as sent), frames taken as stored (transfer-syntax=*)
// Counted from Resource Timing: every /dicom-web/ response's encodedBodySize (what crossed
// the link, headers aside) and decodedBodySize. The slices are a real scanner's CT (the two
// 512x512 frames of github.com/suyashkumar/dicom's testdata/5.dcm, alternated, each slice with
// its own UIDs and position): a scan with little noise (dcmcjpls codes it 12:1), so the run
// also does a phantom with noise in every voxel (web/e2e/server.mjs ctPhantom), the harder
// case for a lossless coder. Chromium keeps 250 Resource Timing entries by default: the page
// raises that before it loads.
//
//   make web && make build && node bench/web-bytes.mjs
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, dicomImage, stowMany, tokenSecret, requestConsultation, repoRoot } from '../web/e2e/server.mjs';

const SLICES = Number(process.env.SLICES ?? 300);
const PW = 'bench-' + randomUUID().slice(0, 8);

// The real CT's two frames: the Pixel Data (7FE0,0010) OW of an explicit VR little endian file.
function realFrames() {
  const mod = execFileSync('go', ['env', 'GOMODCACHE'], { cwd: repoRoot }).toString().trim();
  const file = fs.readFileSync(path.join(mod, 'github.com/suyashkumar/dicom@v1.1.0/testdata/5.dcm'));
  const tag = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0, 0]);
  const at = file.lastIndexOf(tag);
  if (at < 0) throw new Error('no OW Pixel Data in 5.dcm');
  const len = file.readUInt32LE(at + 8);
  const px = file.subarray(at + 12, at + 12 + len);
  const frame = 512 * 512 * 2;
  if (px.length < 2 * frame) throw new Error(`5.dcm: ${px.length} bytes of pixels`);
  return [px.subarray(0, frame), px.subarray(frame, 2 * frame)];
}

// noisy adds Gaussian noise (sigma 10 HU, Box-Muller on a seeded xorshift) to every voxel above
// air, as a clinical CT's quantum noise: the case that decides what lossless coding saves.
function noisy(frame) {
  const out = Buffer.from(frame);
  let x = 2463534242;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) + 1) / 4294967297;
  };
  for (let i = 0; i < out.length; i += 2) {
    const v = out.readUInt16LE(i);
    if (v < 200) continue; // air stays flat, as on a scanner's reconstruction outside the body
    const g = Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
    out.writeUInt16LE(Math.max(0, Math.min(65535, Math.round(v + 10 * g))), i);
  }
  return out;
}

function series(frames, name, id) {
  // frames null: the phantom.
  const root = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
  const study = `${root}.1`;
  const ser = `${study}.1`;
  const files = [];
  for (let n = 1; n <= SLICES; n++) {
    files.push(dicomImage({ kind: 'ct', study, series: ser, instance: `${ser}.${n}`, number: n, slices: SLICES, patientName: name, patientId: id, pixels: frames ? frames[n % 2] : null }));
  }
  return { study, files };
}

let token = '';
const server = await startServer((cli) => {
  cli(['site', 'add', '-kind', 'hospital', 'dahua', '大化县人民医院']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
  cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', '韦东平', '-title', '主治医师', '-years', '8', 'wei.dongping'], PW + '\n');
  token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', 'bench-CT']));
});
let browser;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-bytes-'));
try {
  browser = await launchBrowser();
  if (!browser) throw new Error('no Chromium at /usr/bin/chromium');
  const page = await browser.context.newPage();
  await page.addInitScript(() => performance.setResourceTimingBufferSize(100_000));
  await page.goto(server.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('wei.dongping');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/doctor\/worklist$/);

  /** open loads a consultation's viewer until the whole series is in, and sums its DICOMweb bytes. */
  async function open(id) {
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.clearBrowserCache');
    await page.goto(`${server.base}/doctor/consultations/${id}`);
    await page.waitForFunction(() => {
      const v = document.querySelector('.dicom-viewer');
      const total = Number(v?.getAttribute('data-total'));
      return total > 0 && Number(v.getAttribute('data-loaded')) === total;
    }, null, { timeout: 300_000, polling: 500 });
    return page.evaluate(() => {
      const out = { encoded: 0, decoded: 0, frames: 0, metadata: 0 };
      for (const e of performance.getEntriesByType('resource')) {
        if (!e.name.includes('/dicom-web/')) continue;
        out.encoded += e.encodedBodySize;
        out.decoded += e.decodedBodySize;
        if (e.name.includes('/frames/')) out.frames++;
        if (e.name.endsWith('/metadata')) out.metadata++;
      }
      return out;
    });
  }
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
  let k = 0;
  const real = realFrames();
  for (const [what, frames] of [['real CT (5.dcm, 2 frames alternated)', real], ['the real CT with quantum noise added (sigma 10 HU in the body)', real.map(noisy)],
    ['phantom CT (periodic texture)', null]]) {
    k++;
    // Native, by STOW-RS.
    const a = series(frames, `测试^甲${k}`, `A${k}`);
    await stowMany(server.base, token, a.files);
    const idA = await requestConsultation(server.base, 'lan.xiuying', PW, { patient: { id: `A${k}`, name: `测试^甲${k}`, sex: 'F', birthDate: '19600101' }, study: a.study, question: '原始' });
    // The same pixels through the station (JPEG-LS on the way).
    const b = series(frames, `测试^乙${k}`, `B${k}`);
    const dir = path.join(tmp, `study${k}`);
    fs.mkdirSync(dir);
    b.files.forEach((f, i) => fs.writeFileSync(path.join(dir, `${i}.dcm`), f));
    const station = path.join(repoRoot, 'bin', 'sanping-station');
    const t0 = performance.now();
    execFileSync(station, ['upload', '-server', server.base, '-token', token, '-journal', path.join(tmp, `journal${k}`), dir], { stdio: 'pipe' });
    const up = (performance.now() - t0) / 1000;
    const idB = await requestConsultation(server.base, 'lan.xiuying', PW, { patient: { id: `B${k}`, name: `测试^乙${k}`, sex: 'F', birthDate: '19600101' }, study: b.study, question: '工作站' });
    // One load of the native series gives both: its decoded sizes are what was sent before.
    const native = await open(idA);
    const jls = await open(idB);
    console.log(`\n${SLICES} slices, ${what}; /dicom-web/ response bodies (Resource Timing); station upload ${up.toFixed(1)} s on loopback`);
    console.log(`before (uncoded)              ${mb(native.decoded)}  (${native.frames} frame requests)   1.00x`);
    console.log(`native, content-coded (gzip)  ${mb(native.encoded)}  ${(native.encoded / native.decoded).toFixed(2)}x`);
    console.log(`station's JPEG-LS, as stored  ${mb(jls.encoded)}  ${(jls.encoded / native.decoded).toFixed(2)}x   (${jls.frames} frame requests)   target <= 0.55x`);
  }
} finally {
  await browser?.close();
  await server.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
