// Local-first village screens in headless Chromium: the clinic's station (bin/sanping-station
// watch) uploads a CT series to bin/sanping and keeps it; the clinic opens the live
// consultation and the viewer reads metadata and frames from the station on 127.0.0.1:11180
// with a county grant, the county serving no frame. With the station stopped, the county.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, shoot, DESKTOP, dicomInstance, repoRoot } from './server.mjs';
import { county, liveConsultation, signIn, PEOPLE, STUDY, SERIES, IMAGES } from './room.mjs';

const LOCAL = '127.0.0.1:11180';

let server;
let browser;
let station;
let token;
let ids;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-station-e2e-'));
const pageErrors = [];
const cspViolations = [];

// Built every time (go build is incremental): `make build` builds the server only.
function stationBinary() {
  const bin = path.join(repoRoot, 'bin', 'sanping-station');
  execFileSync('go', ['build', '-o', 'bin/sanping-station', './cmd/sanping-station'], { cwd: repoRoot, timeout: 300_000 });
  return bin;
}

/** startStation runs `sanping-station watch` on a folder of the study's files and waits until it kept them all. */
async function startStation(dir) {
  const proc = spawn(stationBinary(), ['watch', '-server', server.base, '-token', token, '-config', path.join(tmp, 'client.json'),
    '-journal', path.join(tmp, 'journal'), '-interval', '200ms', '-local-addr', LOCAL, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sanping-station stopped:\n${log}`);
    try {
      const h = await (await fetch(`http://${LOCAL}/dicom-web/health`)).json();
      if (h.instances === IMAGES) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the station did not keep ${IMAGES} instances in 60 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    log: () => log,
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
    },
  };
}

before(async () => {
  server = await startServer((cli) => {
    token = county(cli);
  });
  // The CT series the modality sent: the station uploads it and keeps it in DIR/.sent.
  const dir = path.join(tmp, 'incoming');
  fs.mkdirSync(dir);
  for (let i = 0; i < IMAGES; i++) {
    const f = dicomInstance({ study: STUDY, series: SERIES, instance: `${SERIES}.${i + 1}`, number: i + 1, patientName: '黄美玲', patientId: 'LS-0042', size: 256 });
    fs.writeFileSync(path.join(dir, `${i + 1}.dcm`), f);
  }
  station = await startStation(dir);
  ids = await liveConsultation(server.base, token); // the same files again: already stored
  browser = await launchBrowser();
  if (browser) {
    browser.context.on('console', (msg) => {
      if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
    });
  }
}, { timeout: 240_000 });

after(async () => {
  await station?.stop();
  await browser?.close();
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const T = { timeout: 120_000 };
const skip = () => !browser && 'no Chromium at /usr/bin/chromium';

/** framesByHost counts frame requests by host from now on. */
function framesByHost(page) {
  const n = {};
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.includes('/frames/')) n[u.host] = (n[u.host] ?? 0) + 1;
  });
  return n;
}

let signedIn = false;

async function openRoom(page) {
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  const to = `/consultations/${ids.id}/live?auto=1`;
  if (!signedIn) await signIn(page, server.base, PEOPLE.clinic.username, to);
  else await page.goto(server.base + to);
  signedIn = true;
  const v = page.locator('.room-viewer .dicom-viewer');
  await v.waitFor({ timeout: 60_000 });
  // The whole stack is fetched in the background once the first image shows.
  await page.waitForFunction((n) => {
    const el = document.querySelector('.room-viewer .dicom-viewer');
    return el?.dataset.instance && el.dataset.source && el.dataset.total === String(n);
  }, IMAGES, { timeout: 60_000, polling: 100 });
  return v;
}

test('the village screen reads the study from its own station', T, async (t) => {
  if (skip()) return t.skip(skip());
  const page = await browser.context.newPage();
  const frames = framesByHost(page);
  const v = await openRoom(page);
  assert.equal(await v.getAttribute('data-source'), 'local');
  await page.getByTestId('local-source').waitFor();
  assert.equal((await page.getByTestId('local-source').textContent()).trim(), '本机影像');
  // Frames come from the station, nearest first, until the series is in (prefetch of 12).
  const countyHost = new URL(server.base).host;
  for (let i = 0; i < 100 && (frames[LOCAL] ?? 0) < IMAGES; i++) await page.waitForTimeout(100);
  assert.ok((frames[LOCAL] ?? 0) >= IMAGES, `frames from the station: ${JSON.stringify(frames)}`);
  assert.equal(frames[countyHost] ?? 0, 0, `the county served frames: ${JSON.stringify(frames)}`);
  assert.match(station.log(), /local read.*user=lan\.xiuying/);
  await shoot(page, 'local-station-desktop', DESKTOP);
  await page.close();
});

test('with the station stopped, the county serves the study', T, async (t) => {
  if (skip()) return t.skip(skip());
  await station.stop();
  const page = await browser.context.newPage();
  const frames = framesByHost(page);
  const v = await openRoom(page);
  assert.equal(await v.getAttribute('data-source'), 'county');
  assert.equal(await page.getByTestId('local-source').count(), 0);
  const countyHost = new URL(server.base).host;
  for (let i = 0; i < 100 && (frames[countyHost] ?? 0) < 1; i++) await page.waitForTimeout(100);
  assert.ok((frames[countyHost] ?? 0) >= 1, `frames from the county: ${JSON.stringify(frames)}`);
  assert.equal(frames[LOCAL] ?? 0, 0);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
  await page.close();
});
