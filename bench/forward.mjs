// Modality to county over an emulated 2 Mbit/s up / 10 Mbit/s down / 80 ms RTT / 1% loss link
// (issue 16's speed target): Sanping (storescu -> sanping-station scp -forward -> link -> sanping)
// vs Orthanc (storescu -> village Orthanc -> DICOMweb STOW client -> link -> county Orthanc),
// the same files, one run; and the floor (dcmcjpls's output bytes / 2 Mbit/s + one RTT).
// Clock: from storescu's start until the county's QIDO-RS lists every instance of the study
// (polled every 250 ms on loopback, not through the link).
//
//   make build client && (cd web && npm ci) && node bench/forward.mjs
//
// Knobs: SLICES=300 (CT slices), NOISE=1 (sigma 10 HU noise on the real CT, as web-bytes.mjs),
// REPS=1 (medians of REPS runs, alternating who goes first), SETS=cr,ct, ORTHANC_BIN=/usr/sbin/Orthanc, LOSS=0.01, UP=2e6, DOWN=10e6, DELAY=40 (ms, one way).
import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startProxy, dicomImage, tokenSecret, repoRoot } from '../web/e2e/server.mjs';

const SLICES = Number(process.env.SLICES ?? 300);
const NOISE = (process.env.NOISE ?? '1') === '1';
const REPS = Number(process.env.REPS ?? 1);
const SETS = (process.env.SETS ?? 'cr,ct').split(',');
const ORTHANC = process.env.ORTHANC_BIN ?? '/usr/sbin/Orthanc';
const LINK = {
  upBitsPerSecond: Number(process.env.UP ?? 2e6),
  downBitsPerSecond: Number(process.env.DOWN ?? 10e6),
  delayMs: Number(process.env.DELAY ?? 40),
  loss: Number(process.env.LOSS ?? 0.01),
  seed: 16,
};
const RTT = (2 * LINK.delayMs) / 1000;
const PW = 'bench' + randomUUID().replace(/-/g, '').slice(0, 12);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-forward-'));
const procs = [];
const t = () => new Date().toISOString().slice(11, 19);
const log = (...a) => console.error(t(), 'forward:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(name, cmd, args, env = {}) {
  const out = fs.openSync(path.join(tmp, `${name}.log`), 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  p.name = name;
  procs.push(p);
  return p;
}

async function stopAll() {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) {
      const done = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const k = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(k);
    }
  }
}

async function waitHTTP(url, headers = {}, what = url) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(url, { headers })).ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready after 30 s`);
    await sleep(200);
  }
}

function waitDICOM(aet, port) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      execFileSync('echoscu', ['-aec', aet, '127.0.0.1', String(port)], { stdio: 'ignore' });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${aet} on ${port}: no C-ECHO after 30 s`);
      execFileSync('sleep', ['0.2']);
    }
  }
}

// storescu sends the directory in one association (as bench/station.sh does).
function storescu(aet, port, dir) {
  return new Promise((resolve, reject) => {
    const p = spawn('storescu', ['-aec', aet, '+sd', '127.0.0.1', String(port), dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TCP_NODELAY: '1' } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 && !/^E:/m.test(out) ? resolve() : reject(new Error(`storescu to ${aet}: exit ${code}\n${out.slice(-2000)}`))));
  });
}

// count asks a QIDO-RS for the study's instances.
async function count(base, study, headers) {
  const r = await fetch(`${base}/dicom-web/studies/${study}/instances`, { headers: { Accept: 'application/dicom+json', ...headers } });
  if (r.status === 204 || r.status === 404) return 0;
  if (!r.ok) throw new Error(`QIDO ${base}: ${r.status} ${await r.text()}`);
  const j = await r.json();
  return Array.isArray(j) ? j.length : 0;
}

async function waitAll(base, study, n, headers, limitMs) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const got = await count(base, study, headers);
    if (got >= n) return got;
    if (Date.now() > deadline) throw new Error(`${base}: ${got} of ${n} instances after ${limitMs / 1000} s`);
    await sleep(250);
  }
}

// ---------------------------------------------------------------- the files

const dirBytes = (dir) => fs.readdirSync(dir).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);

function studyUID(file) {
  return execFileSync('dcmdump', ['+P', '0020,000d', '-s', file]).toString().match(/\[([0-9.]+)\]/)[1];
}

// crCopy: 4.dcm with fresh Study, Series and SOP Instance UIDs, in a directory of its own.
function crCopy(name) {
  const mod = execFileSync('go', ['env', 'GOMODCACHE'], { cwd: repoRoot }).toString().trim();
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const f = path.join(dir, 'cr.dcm');
  fs.copyFileSync(path.join(mod, 'github.com/suyashkumar/dicom@v1.1.0/testdata/4.dcm'), f);
  execFileSync('dcmodify', ['-nb', '-gin', '-gst', '-gse', f], { stdio: 'ignore' });
  return { dir, study: studyUID(f), n: 1 };
}

// The real CT's two frames (testdata/5.dcm), as bench/web-bytes.mjs realFrames().
function realFrames() {
  const mod = execFileSync('go', ['env', 'GOMODCACHE'], { cwd: repoRoot }).toString().trim();
  const file = fs.readFileSync(path.join(mod, 'github.com/suyashkumar/dicom@v1.1.0/testdata/5.dcm'));
  const tag = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0, 0]);
  const at = file.lastIndexOf(tag);
  if (at < 0) throw new Error('no OW Pixel Data in 5.dcm');
  const len = file.readUInt32LE(at + 8);
  const px = file.subarray(at + 12, at + 12 + len);
  const frame = 512 * 512 * 2;
  return [px.subarray(0, frame), px.subarray(frame, 2 * frame)];
}

// noisy: sigma 10 HU Gaussian noise above air, seeded, as bench/web-bytes.mjs noisy().
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
    if (v < 200) continue;
    const g = Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
    out.writeUInt16LE(Math.max(0, Math.min(65535, Math.round(v + 10 * g))), i);
  }
  return out;
}

let frames;
function ctCopy(name) {
  frames ??= NOISE ? realFrames().map(noisy) : realFrames();
  const root = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
  const study = `${root}.1`;
  const ser = `${study}.1`;
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (let n = 1; n <= SLICES; n++) {
    const f = dicomImage({ kind: 'ct', study, series: ser, instance: `${ser}.${n}`, number: n, slices: SLICES, patientName: 'TEST^FORWARD', patientId: 'F1', pixels: frames[n % 2] });
    fs.writeFileSync(path.join(dir, `${n}.dcm`), f);
  }
  return { dir, study, n: SLICES };
}

// floor: dcmcjpls (lossless) of each file, summed, at the link's up rate, plus one RTT.
function floor(dir) {
  const out = path.join(tmp, 'jls');
  fs.mkdirSync(out, { recursive: true });
  let bytes = 0;
  for (const f of fs.readdirSync(dir)) {
    const o = path.join(out, f);
    execFileSync('dcmcjpls', [path.join(dir, f), o]);
    bytes += fs.statSync(o).size;
    fs.rmSync(o);
  }
  return { bytes, seconds: (bytes * 8) / LINK.upBitsPerSecond + RTT };
}

// ---------------------------------------------------------------- Sanping

async function startSanping() {
  const bin = path.join(repoRoot, 'bin', 'sanping');
  const station = path.join(repoRoot, 'bin', 'sanping-station');
  const data = path.join(tmp, 'sanping-data');
  fs.mkdirSync(data);
  const cli = (args, input = '') => execFileSync(bin, [args[0], args[1], '-data', data, ...args.slice(2)], { input }).toString();
  cli(['site', 'add', '-kind', 'hospital', 'dahua', '大化县人民医院']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'dahua', 'longshan', '龙山村卫生室']);
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', '蓝秀英', 'lan.xiuying'], PW + '\n');
  const token = tokenSecret(cli(['token', 'create', '-institution', 'longshan', 'bench-forward']));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  start('sanping', bin, ['-addr', `127.0.0.1:${port}`, '-data', data, '-media-udp=', '-media-tcp=', '-turn='], { SANPING_ADMIN_PASSWORD: PW });
  await waitHTTP(`${base}/healthz`);
  const proxy = await startProxy(base, LINK);
  const config = path.join(tmp, 'station.json');
  // Asynchronous: the link emulator runs in this process's event loop.
  await new Promise((resolve, reject) => {
    const p = spawn(station, ['login', '-server', proxy.base, '-token', '-', '-config', config], { stdio: ['pipe', 'ignore', 'inherit'] });
    p.stdin.end(token + '\n');
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sanping-station login: exit ${code}`))));
  });
  const scpPort = await freePort();
  start('station', station, ['scp', '-forward', '-aet', 'SANPING', '-addr', `127.0.0.1:${scpPort}`, '-dir', path.join(tmp, 'station-spool'),
    '-config', config, '-journal', path.join(tmp, 'station-journal'), '-local-addr', '']);
  waitDICOM('SANPING', scpPort);
  // Read at the county with the station's token if it may, else as the clinic's user (Basic).
  let auth = { Authorization: `Bearer ${token}` };
  try {
    await count(base, '1.2.3.4', auth);
  } catch {
    auth = { Authorization: 'Basic ' + Buffer.from(`lan.xiuying:${PW}`).toString('base64') };
    await count(base, '1.2.3.4', auth);
  }
  return {
    name: 'Sanping',
    proxy,
    async send(set) {
      const up0 = proxy.bytes.up;
      const t0 = performance.now();
      await storescu('SANPING', scpPort, set.dir);
      const scu = (performance.now() - t0) / 1000;
      await waitAll(base, set.study, set.n, auth, 3_600_000);
      return { seconds: (performance.now() - t0) / 1000, scu, up: proxy.bytes.up - up0 };
    },
  };
}

// ---------------------------------------------------------------- Orthanc

async function startOrthancs() {
  const plugin = execFileSync('dpkg', ['-L', 'orthanc-dicomweb']).toString().split('\n').find((l) => /\/libOrthancDicomWeb\.so$/.test(l));
  if (!plugin) throw new Error('libOrthancDicomWeb.so not found (apt-get install orthanc-dicomweb)');
  const user = 'bench';
  const basic = { Authorization: 'Basic ' + Buffer.from(`${user}:${PW}`).toString('base64') };
  const conf = (name, http, dicom, extra) => {
    const st = path.join(tmp, `orthanc-${name}`);
    fs.mkdirSync(st);
    const c = {
      Name: `forward-${name}`,
      StorageDirectory: st,
      IndexDirectory: st,
      StorageCompression: false,
      SyncStorageArea: true,
      // Orthanc's HTTP client gives up on a request after HttpTimeout (default 60 s); a STOW
      // of a CT over 2 Mbit/s takes minutes.
      HttpTimeout: 3600,
      HttpServerEnabled: true,
      HttpPort: http,
      DicomServerEnabled: dicom > 0,
      DicomPort: dicom || 0,
      DicomAet: name.toUpperCase(),
      RemoteAccessAllowed: true,
      AuthenticationEnabled: true,
      RegisteredUsers: { [user]: PW },
      Plugins: [plugin],
      DicomWeb: { Enable: true, Root: '/dicom-web/', ...extra },
    };
    const f = path.join(tmp, `orthanc-${name}.json`);
    fs.writeFileSync(f, JSON.stringify(c, null, 2));
    return f;
  };
  const countyPort = await freePort();
  const county = `http://127.0.0.1:${countyPort}`;
  start('orthanc-county', ORTHANC, [conf('county', countyPort, 0, {})]);
  await waitHTTP(`${county}/system`, basic, 'county Orthanc');
  const proxy = await startProxy(county, LINK);
  const villagePort = await freePort();
  const village = `http://127.0.0.1:${villagePort}`;
  const dicomPort = await freePort();
  start('orthanc-village', ORTHANC, [conf('village', villagePort, dicomPort, { Servers: { county: { Url: `${proxy.base}/dicom-web/`, Username: user, Password: PW } } })]);
  await waitHTTP(`${village}/system`, basic, 'village Orthanc');
  waitDICOM('VILLAGE', dicomPort);
  const post = async (url, body) => {
    const r = await fetch(url, { method: 'POST', headers: { ...basic, 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await r.text();
    if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return {
    name: 'Orthanc',
    proxy,
    async send(set) {
      const up0 = proxy.bytes.up;
      const t0 = performance.now();
      await storescu('VILLAGE', dicomPort, set.dir);
      const scu = (performance.now() - t0) / 1000;
      // As soon as storescu is through: the study's Orthanc ID, then the plugin's STOW client
      // (synchronous: the answer comes once every instance is sent).
      const found = await post(`${village}/tools/lookup`, set.study);
      const id = found.find((x) => x.Type === 'Study')?.ID;
      if (!id) throw new Error(`village Orthanc: no study ${set.study}`);
      // Not awaited: node's fetch gives up waiting for headers after 300 s, and the synchronous
      // answer comes only once the whole study is through. The county's QIDO decides.
      let failed = null;
      post(`${village}/dicom-web/servers/county/stow`, { Resources: [id] }).then(
        (stow) => stow && stow.FailedInstancesCount && (failed = JSON.stringify(stow)),
        (e) => !/Headers Timeout|fetch failed/.test(String(e) + String(e.cause)) && (failed = String(e)),
      );
      const deadline = Date.now() + 3_600_000;
      while ((await count(county, set.study, basic)) < set.n) {
        if (failed) throw new Error(`STOW to county: ${failed}`);
        if (Date.now() > deadline) throw new Error('county Orthanc: not all instances after 1 h');
        await sleep(250);
      }
      return { seconds: (performance.now() - t0) / 1000, scu, up: proxy.bytes.up - up0 };
    },
  };
}

// ---------------------------------------------------------------- the run

const mb = (n) => (n / 1e6).toFixed(2);
const rows = [];
try {
  log(`work dir ${tmp}; link up ${LINK.upBitsPerSecond / 1e6} Mbit/s, down ${LINK.downBitsPerSecond / 1e6} Mbit/s, ${LINK.delayMs} ms each way, loss ${LINK.loss}`);
  const sanping = await startSanping();
  const orthanc = await startOrthancs();
  for (const set of SETS) {
    const make = set === 'cr' ? () => crCopy : () => ctCopy;
    const label = set === 'cr' ? 'CR 4.dcm (1 file)' : `CT ${SLICES} x 512x512${NOISE ? ' (5.dcm + noise)' : ' (5.dcm)'}`;
    const runs = [];
    let native = 0;
    let fl;
    for (let rep = 1; rep <= REPS; rep++) {
      // Each system gets its own copy with fresh UIDs: a new study for each, same pixels.
      const a = make()(`${set}-sanping-${rep}`);
      const b = make()(`${set}-orthanc-${rep}`);
      native = dirBytes(a.dir);
      fl ??= floor(a.dir);
      log(`${label} rep ${rep}: ${mb(native)} MB native, ${mb(fl.bytes)} MB dcmcjpls, floor ${fl.seconds.toFixed(1)} s`);
      // Alternate who goes first.
      const order = rep % 2 ? [[sanping, a], [orthanc, b]] : [[orthanc, b], [sanping, a]];
      const got = {};
      for (const [sys, files] of order) {
        got[sys.name] = await sys.send(files);
        log(`${sys.name} ${got[sys.name].seconds.toFixed(1)} s (storescu ${got[sys.name].scu.toFixed(1)} s), ${mb(got[sys.name].up)} MB up`);
      }
      runs.push(got);
      fs.rmSync(a.dir, { recursive: true });
      fs.rmSync(b.dir, { recursive: true });
    }
    const median = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const pick = (n) => ({ seconds: median(runs.map((r) => r[n].seconds)), up: median(runs.map((r) => r[n].up)) });
    const rs = pick('Sanping');
    const ro = pick('Orthanc');
    rows.push({ label, native, fl, rs, ro });
  }
  console.log(`\nLink: ${LINK.upBitsPerSecond / 1e6} Mbit/s up, ${LINK.downBitsPerSecond / 1e6} Mbit/s down, ${2 * LINK.delayMs} ms RTT, ${LINK.loss * 100}% loss (stall model), seed ${LINK.seed}; ${REPS === 1 ? 'one run' : `median of ${REPS} runs`}`);
  console.log('\n| files | native MB | Sanping s | Orthanc s | floor s | Sanping/Orthanc (<= 0.5) | Sanping/floor (<= 1.15) | MB up Sanping | MB up Orthanc | MB floor (dcmcjpls) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.label} | ${mb(r.native)} | ${r.rs.seconds.toFixed(1)} | ${r.ro.seconds.toFixed(1)} | ${r.fl.seconds.toFixed(1)} | ${(r.rs.seconds / r.ro.seconds).toFixed(2)}x | ${(r.rs.seconds / r.fl.seconds).toFixed(2)}x | ${mb(r.rs.up)} | ${mb(r.ro.up)} | ${mb(r.fl.bytes)} |`);
  }
} catch (e) {
  process.exitCode = 1;
  console.error(e);
  for (const f of fs.readdirSync(tmp).filter((f) => f.endsWith('.log'))) {
    console.error(`--- ${f}\n` + fs.readFileSync(path.join(tmp, f)).toString().slice(-3000));
  }
  throw e;
} finally {
  await stopAll();
  if (!process.env.KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(process.exitCode ?? 0);
}
