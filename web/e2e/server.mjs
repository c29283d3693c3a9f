// The real server for browser tests: bin/sanping (with the built app embedded) on a free port,
// a fresh data directory set up with the CLI as a county IT person would, and Debian's
// Chromium through playwright-core (never a downloaded browser).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const outputDir = path.resolve(here, '../test-output');

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

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

function binary() {
  if (process.env.SANPING_BIN) return path.resolve(process.env.SANPING_BIN);
  const bin = path.join(repoRoot, 'bin', 'sanping');
  if (!fs.existsSync(bin)) run('go', ['build', '-o', 'bin/sanping', './cmd/sanping'], { cwd: repoRoot, timeout: 300_000 });
  return bin;
}

/**
 * startServer makes a data directory with setup(cli) (cli(args, stdin) runs `sanping ARGS`),
 * starts the server on a free port and waits for /healthz. restart(change) stops it, calls
 * change(dataDir) with the server down (to change its files as someone with disk access
 * could) and starts it again at the same address.
 */
export async function startServer(setup) {
  const bin = binary();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-web-e2e-'));
  const data = path.join(tmp, 'data');
  fs.mkdirSync(data);
  const cli = (args, stdin = '') => run(bin, [args[0], args[1], '-data', data, ...args.slice(2)], { input: stdin }).toString();
  setup(cli);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  const keep = (d) => {
    log += d.toString();
    if (log.length > 1_000_000) log = log.slice(-500_000);
  };
  let proc;
  async function launch() {
    proc = spawn(bin, ['-addr', `127.0.0.1:${port}`, '-data', data, '-media-udp=', '-media-tcp=', '-turn='], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    let exited = null;
    proc.on('exit', (code, sig) => {
      exited = `exit code ${code} signal ${sig}`;
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (exited) throw new Error(`sanping stopped before it was ready (${exited}):\n${log}`);
      try {
        if ((await fetch(`${base}/healthz`)).ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`sanping not ready after 20 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async function halt() {
    if (proc.exitCode === null && proc.signalCode === null) {
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(t);
    }
  }
  await launch();
  return {
    base,
    data,
    log: () => log,
    async restart(change) {
      await halt();
      change(data);
      await launch();
    },
    async stop() {
      await halt();
      if (process.env.SANPING_KEEP_TMP) {
        fs.writeFileSync(path.join(tmp, 'server.log'), log);
        console.log(`# kept ${tmp}`);
      } else {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/** launchBrowser starts Debian's Chromium headless with a fresh profile. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    if (process.env.CI) throw new Error(`no Chromium at ${executablePath} (apt-get install chromium)`);
    return null;
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1366, height: 768 },
    locale: 'zh-CN',
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1366, height: 768 };

/** shoot saves a screenshot of the page at a viewport under web/test-output/. */
export async function shoot(page, name, viewport) {
  fs.mkdirSync(outputDir, { recursive: true });
  await page.setViewportSize(viewport);
  await page.screenshot({ path: path.join(outputDir, `${name}.png`), fullPage: true });
}

// ---------------------------------------------------------------------------------------------
// Test data for the doctor screens: small DICOM files made here, stored with STOW-RS as a
// station would, and API calls as a signed-in user.

function element(group, el, vr, value) {
  const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
  let body = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8');
  if (body.length % 2) body = Buffer.concat([body, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(el, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(body.length, 8);
  else head.writeUInt16LE(body.length, 6);
  return Buffer.concat([head, body]);
}
const us = (n) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };

/**
 * dicomInstance makes a DICOM Part 10 file (explicit VR little endian, 8-bit monochrome):
 * a ring whose size follows the instance number, so stepping through a series shows it move.
 */
export function dicomInstance({ study, series, instance, number, patientName, patientId, sex = 'F', birthDate = '19680412', modality = 'CT', description = '胸部 平扫', size = 128 }) {
  const px = Buffer.alloc(size * size);
  const r = size * (0.15 + 0.06 * number);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const d = Math.hypot(x - size / 2, y - size / 2);
      px[y * size + x] = Math.abs(d - r) < 6 ? 250 : Math.round((x / size) * 90);
    }
  }
  const sop = '1.2.840.10008.5.1.4.1.1.2';
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', sop),
    element(0x0002, 0x0003, 'UI', instance),
    element(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
    element(0x0002, 0x0012, 'UI', '1.2.826.0.1.3680043.10.1'),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  const ds = Buffer.concat([
    element(0x0008, 0x0005, 'CS', 'ISO_IR 192'),
    element(0x0008, 0x0016, 'UI', sop),
    element(0x0008, 0x0018, 'UI', instance),
    element(0x0008, 0x0020, 'DA', '20260310'),
    element(0x0008, 0x0060, 'CS', modality),
    element(0x0008, 0x103e, 'LO', description),
    element(0x0010, 0x0010, 'PN', patientName),
    element(0x0010, 0x0020, 'LO', patientId),
    element(0x0010, 0x0030, 'DA', birthDate),
    element(0x0010, 0x0040, 'CS', sex),
    element(0x0020, 0x000d, 'UI', study),
    element(0x0020, 0x000e, 'UI', series),
    element(0x0020, 0x0011, 'IS', '1'),
    element(0x0020, 0x0013, 'IS', String(number)),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', 'MONOCHROME2'),
    element(0x0028, 0x0010, 'US', us(size)),
    element(0x0028, 0x0011, 'US', us(size)),
    element(0x0028, 0x0100, 'US', us(8)),
    element(0x0028, 0x0101, 'US', us(8)),
    element(0x0028, 0x0102, 'US', us(7)),
    element(0x0028, 0x0103, 'US', us(0)),
    element(0x7fe0, 0x0010, 'OW', px),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from([2, 0, 0, 0, 0x55, 0x4c, 4, 0]), groupLength, meta, ds]);
}

/** stow stores DICOM files with STOW-RS as a station does (its API token). */
export async function stow(base, token, files) {
  const boundary = 'sanping-e2e-' + Math.random().toString(16).slice(2);
  const parts = [];
  for (const f of files) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), f, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  const res = await fetch(`${base}/dicom-web/studies`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`, Accept: 'application/dicom+json' },
    body: Buffer.concat(parts),
  });
  // 202 without a Failed SOP Sequence (0008,1198): every instance stored, some with a warning
  // (e.g. already stored in another transfer syntax, after the station sent its JPEG-LS).
  const text = await res.text();
  if (res.status === 200 || (res.status === 202 && !('00081198' in JSON.parse(text)))) return;
  throw new Error(`STOW: ${res.status} ${text}`);
}

/** tokenSecret is the secret `sanping token create` printed (its last line). */
export function tokenSecret(cliOutput) {
  return cliOutput.trim().split('\n').pop().trim();
}

/** apiSession signs in over the API and returns a call(method, path, body) with its cookie and CSRF token. */
export async function apiSession(base, username, password) {
  const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) });
  if (!res.ok) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const { csrfToken } = await res.json();
  return async function call(method, path, body, contentType = 'application/json') {
    const headers = { Cookie: cookie, 'X-CSRF-Token': csrfToken };
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = contentType;
      payload = Buffer.isBuffer(body) ? body : JSON.stringify(body);
    }
    const r = await fetch(base + path, { method, headers, body: payload });
    const text = await r.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: r.status, body: json };
  };
}

/**
 * requestConsultation has a clinic user ask a hospital (by institution code) to read a study,
 * as the clinic's request form does, consent confirmed; returns the consultation's ID.
 */
export async function requestConsultation(base, username, password, { patient, study, question, urgency = 'routine', hospital = 'dahua' }) {
  const clinic = await apiSession(base, username, password);
  const target = (await clinic('GET', '/api/institutions')).body.find((i) => i.code === hospital);
  const r = await clinic('POST', '/api/consultations', {
    patient, studyUIDs: [study], clinicalQuestion: question,
    purpose: '明确诊断', urgency, targetInstitutionId: target.id, consentConfirmed: true, recordingConsent: false,
  });
  if (r.status !== 201) throw new Error(`consultation request: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id;
}

/** png makes a small PNG (a consent form photo stand-in): grey paper with dark lines. */
export function png(width = 200, height = 140) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = y % 14 === 7 && x > 15 && x < width - 15 ? 60 : 235;
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------- clinic tests' helpers

/**
 * makeDicom writes a small DICOM Part 10 file (Explicit VR Little Endian, UTF-8 names): a
 * MONOCHROME2 16-bit image of rows x cols whose pixels are a gradient, padded with a private
 * element to `size` bytes when asked (upload benches want files of a given size).
 */
export function makeDicom({ studyUID, seriesUID, sopUID, patientName = 'Test^Patient', patientId = 'P1', sex = 'O', birthDate = '', studyDate = '20260301',
  modality = 'CT', description = '', seriesNumber = 1, instanceNumber = 1, rows = 64, cols = 64, size = 0 }) {
  const parts = [];
  const el = element; // the encoder dicomInstance uses
  const sopClass = '1.2.840.10008.5.1.4.1.1.7'; // Secondary Capture: no modality-specific modules needed
  const meta = [
    el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    el(0x0002, 0x0002, 'UI', sopClass),
    el(0x0002, 0x0003, 'UI', sopUID),
    el(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
    el(0x0002, 0x0012, 'UI', '1.2.826.0.1.3680043.10.1'),
  ];
  const metaLen = meta.reduce((n, b) => n + b.length, 0);
  const groupLen = Buffer.alloc(4);
  groupLen.writeUInt32LE(metaLen);
  parts.push(Buffer.alloc(128), Buffer.from('DICM'), el(0x0002, 0x0000, 'UL', groupLen), ...meta);
  const pixels = Buffer.alloc(rows * cols * 2);
  for (let y = 0; y < rows; y++) for (let x = 0; x < cols; x++) pixels.writeUInt16LE(((x + y + instanceNumber * 7) * 16) % 4096, (y * cols + x) * 2);
  const body = [
    el(0x0008, 0x0005, 'CS', 'ISO_IR 192'),
    el(0x0008, 0x0016, 'UI', sopClass),
    el(0x0008, 0x0018, 'UI', sopUID),
    el(0x0008, 0x0020, 'DA', studyDate),
    el(0x0008, 0x0030, 'TM', '093000'),
    el(0x0008, 0x0050, 'SH', 'A' + instanceNumber),
    el(0x0008, 0x0060, 'CS', modality),
    el(0x0008, 0x0064, 'CS', 'WSD'),
    el(0x0008, 0x1030, 'LO', description),
    el(0x0010, 0x0010, 'PN', patientName),
    el(0x0010, 0x0020, 'LO', patientId),
    el(0x0010, 0x0030, 'DA', birthDate),
    el(0x0010, 0x0040, 'CS', sex),
    el(0x0020, 0x000d, 'UI', studyUID),
    el(0x0020, 0x000e, 'UI', seriesUID),
    el(0x0020, 0x0010, 'SH', '1'),
    el(0x0020, 0x0011, 'IS', String(seriesNumber)),
    el(0x0020, 0x0013, 'IS', String(instanceNumber)),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', 'MONOCHROME2'),
    el(0x0028, 0x0010, 'US', us(rows)),
    el(0x0028, 0x0011, 'US', us(cols)),
    el(0x0028, 0x0100, 'US', us(16)),
    el(0x0028, 0x0101, 'US', us(12)),
    el(0x0028, 0x0102, 'US', us(11)),
    el(0x0028, 0x0103, 'US', us(0)),
  ];
  const tail = el(0x7fe0, 0x0010, 'OW', pixels);
  const base = [...parts, ...body, tail].reduce((n, b) => n + b.length, 0);
  const creator = el(0x0009, 0x0010, 'LO', 'SANPING PAD ');
  const pad = size - base - creator.length - 12;
  if (size && pad > 0) {
    // Private elements of group 0009 go between groups 0008 and 0010 (ascending tag order).
    const at = body.findIndex((b) => b.readUInt16LE(0) > 0x0009);
    body.splice(at, 0, creator, el(0x0009, 0x1000, 'OB', Buffer.alloc(pad - (pad % 2))));
  }
  return Buffer.concat([...parts, ...body, tail]);
}

/**
 * Link is one direction of an emulated link: bytes leave at rateBitsPerSecond (a token bucket
 * shared by every connection in that direction, as a 4G cell's capacity is) and arrive delayMs
 * later, plus a random [0, jitterMs). Without a rate it only delays; without any option it
 * passes bytes through at once. It is the same model as internal/tcpproxy (Go): TCP never
 * reorders, so a piece is never written before the one ahead of it on its connection; a lost
 * segment (probability loss) is not lost to the application but resent by TCP, so it and
 * everything behind it on that connection wait one retransmission timeout, rtoMs
 * (max(200, RTT + 4 * jitter), Linux's RTO with its 200 ms floor; no fast retransmit).
 * Pieces are 1460 bytes (a segment) when there is jitter or loss, else 8 KB.
 */
class Link {
  constructor({ rateBitsPerSecond = 0, delayMs = 0, jitterMs = 0, loss = 0, rtoMs = 200, random = Math.random } = {}) {
    this.rate = rateBitsPerSecond;
    this.delay = delayMs;
    this.jitter = jitterMs;
    this.loss = loss;
    this.rto = rtoMs;
    this.random = random;
    this.freeAt = 0; // when the link has sent everything queued so far (ms, performance.now())
    this.lost = 0; // segments held one RTO
  }

  get shaped() {
    return this.rate > 0 || this.delay > 0 || this.jitter > 0 || this.loss > 0;
  }

  /** flow is one connection's side of this link: where its pieces go, in order. */
  flow(dst) {
    return { dst, queue: [], timer: null, last: 0 };
  }

  /** send schedules chunk on flow no earlier than notBefore; done() runs once it is written. */
  send(chunk, flow, notBefore, done) {
    const now = performance.now();
    const size = this.jitter > 0 || this.loss > 0 ? 1460 : 8192;
    // Pieces so that one large read does not hold the link in one block.
    for (let off = 0; off < chunk.length; off += size) {
      const piece = chunk.subarray(off, Math.min(chunk.length, off + size));
      const start = Math.max(now, this.freeAt, notBefore);
      this.freeAt = start + (this.rate > 0 ? (piece.length * 8 * 1000) / this.rate : 0);
      let at = this.freeAt + this.delay + (this.jitter > 0 ? this.random() * this.jitter : 0);
      if (this.loss > 0 && this.random() < this.loss) {
        this.lost++;
        at += this.rto;
      }
      this.push(flow, { at, piece, done: off + size >= chunk.length ? done : null });
    }
  }

  /** end ends flow's destination once everything before it is written. */
  end(flow) {
    this.push(flow, { at: Math.max(performance.now(), this.freeAt + this.delay), end: true });
  }

  push(flow, item) {
    item.at = Math.max(item.at, flow.last);
    flow.last = item.at;
    flow.queue.push(item);
    if (!flow.timer) this.drain(flow);
  }

  drain(flow) {
    flow.timer = null;
    const now = performance.now();
    while (flow.queue.length && flow.queue[0].at <= now) {
      const item = flow.queue.shift();
      if (item.end) flow.dst.end();
      else if (!flow.dst.destroyed) flow.dst.write(item.piece);
      item.done?.();
    }
    if (flow.queue.length) flow.timer = setTimeout(() => this.drain(flow), flow.queue[0].at - now);
  }
}

/** mulberry32: a seeded generator of [0, 1), for reproducible jitter and loss. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * startProxy puts a TCP proxy between the browser and the server: cut(ms) drops every
 * connection and refuses new ones for ms, as a 4G link that goes away does. Options emulate
 * the link (see Link): rateBitsPerSecond limits both directions, upBitsPerSecond (browser to
 * server) and downBitsPerSecond override it per direction, each shared by all connections;
 * delayMs is one way, jitterMs adds a random [0, jitterMs) per piece (order kept), loss is the
 * probability a segment is lost (stalls its connection one RTO); seed makes jitter and loss
 * reproducible. A new connection waits one round trip before its first byte goes up (TCP's
 * handshake). Timers in node, no netem.
 */
export async function startProxy(target, { rateBitsPerSecond = 0, upBitsPerSecond, downBitsPerSecond, delayMs = 0, jitterMs = 0, loss = 0, seed } = {}) {
  const { port: targetPort, hostname } = new URL(target);
  const sockets = new Set();
  const random = seed === undefined ? Math.random : seeded(seed);
  const rtoMs = Math.max(200, 2 * delayMs + 4 * jitterMs);
  const link = (rate) => new Link({ rateBitsPerSecond: rate, delayMs, jitterMs, loss, rtoMs, random });
  const up = link(upBitsPerSecond ?? rateBitsPerSecond);
  const down = link(downBitsPerSecond ?? rateBitsPerSecond);
  let downUntil = 0;
  let bytesUp = 0;
  let bytesDown = 0;
  // pipe copies src to dst through a link, pausing src while much is queued (backpressure).
  // It returns the flow on the link (null unshaped).
  const pipe = (src, dst, link, notBefore, count) => {
    if (!link.shaped) {
      src.on('data', (d) => count(d.length));
      src.pipe(dst);
      return null;
    }
    const flow = link.flow(dst);
    let queued = 0;
    src.on('data', (d) => {
      count(d.length);
      queued += d.length;
      if (queued > 256 * 1024) src.pause();
      link.send(d, flow, notBefore(), () => {
        queued -= d.length;
        if (queued <= 256 * 1024 && src.isPaused()) src.resume();
      });
    });
    src.on('end', () => link.end(flow));
    return flow;
  };
  const server = net.createServer((client) => {
    if (Date.now() < downUntil) {
      client.destroy();
      return;
    }
    const opened = performance.now();
    const upstream = net.connect(Number(targetPort), hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    const toServer = pipe(client, upstream, up, () => opened + 2 * delayMs, (n) => (bytesUp += n));
    const toClient = pipe(upstream, client, down, () => 0, (n) => (bytesDown += n));
    // One side closing cleanly leaves what is still on the link toward the other to arrive
    // (the flow ends that side when it is through); an error drops both at once.
    const busy = (flow) => flow !== null && flow.queue.length > 0;
    client.on('error', drop).on('close', (hadError) => (hadError || !busy(toServer)) && drop());
    upstream.on('error', drop).on('close', (hadError) => (hadError || !busy(toClient)) && drop());
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${port}`,
    /** cut drops every connection now and refuses new ones for ms. Resolves when it is back. */
    async cut(ms) {
      downUntil = Date.now() + ms;
      for (const s of sockets) s.destroy();
      sockets.clear();
      await new Promise((r) => setTimeout(r, ms));
    },
    get connections() {
      return sockets.size / 2;
    },
    /** Bytes that went through, browser to server and back. */
    get bytes() {
      return { up: bytesUp, down: bytesDown };
    },
    /** Segments held one RTO for a loss, each way. */
    get lost() {
      return { up: up.lost, down: down.lost };
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

// ---------------------------------------------------------------- viewer tests' helpers

const ds = (v) => String(v);
const sl = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };

/**
 * ctPhantom: one axial slice of a chest-like phantom in HU (air, body, two lungs, spine, a
 * nodule that moves with the slice), size x size.
 */
function ctPhantom(size, slice, slices) {
  const hu = new Int16Array(size * size);
  const c = size / 2;
  const z = slice / Math.max(1, slices - 1);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const bx = (x - c) / (size * 0.42);
      const by = (y - c) / (size * 0.3);
      let v = -1000;
      if (bx * bx + by * by < 1) {
        v = 40 + ((x * 7 + y * 13) % 17) - 8;
        for (const side of [-1, 1]) {
          const lx = (x - c - side * size * 0.19) / (size * 0.15);
          const ly = (y - c + size * 0.02) / (size * 0.2);
          if (lx * lx + ly * ly < 1) v = -820 + ((x * 5 + y * 3) % 41);
        }
        const sx = (x - c) / (size * 0.05);
        const sy = (y - c - size * 0.2) / (size * 0.05);
        if (sx * sx + sy * sy < 1) v = 700;
        const nx = x - c - size * 0.2;
        const ny = y - c + size * 0.05 - (z - 0.5) * size * 0.1;
        if (nx * nx + ny * ny < (size * 0.03) ** 2) v = 30;
      }
      hu[y * size + x] = v;
    }
  }
  return hu;
}

/**
 * dicomImage makes a DICOM Part 10 file (explicit VR little endian) for the viewer's tests:
 * kind 'ct' (16-bit signed, rescale -1024, Pixel Spacing, a plane), 'us' (8-bit multi-frame
 * with a Frame Time), 'dr' (16-bit unsigned, 12 stored, its own window, no Pixel Spacing).
 */
export function dicomImage({ kind, study, series, instance, number = 1, slices = 1, size = 512, frames = 1, frameTime = 40, patientName = '测试^患者', patientId = 'V1', sex = 'M', birthDate = '19580306', seriesNumber = 1, description = '', pixels = null }) {
  const sopClass = { ct: '1.2.840.10008.5.1.4.1.1.2', us: '1.2.840.10008.5.1.4.1.1.3.1', dr: '1.2.840.10008.5.1.4.1.1.1.1' }[kind];
  const modality = { ct: 'CT', us: 'US', dr: 'DX' }[kind];
  let rows = size;
  let cols = size;
  let px;
  const extra = [];
  if (kind === 'ct') {
    if (pixels) {
      // A real scanner's slice (stored value = HU + 1024, size x size, 16-bit LE).
      px = pixels;
    } else {
      const hu = ctPhantom(size, number - 1, slices);
      px = Buffer.alloc(size * size * 2);
      for (let i = 0; i < hu.length; i++) px.writeInt16LE(hu[i] + 1024, i * 2);
    }
    const zpos = -200 + (number - 1) * 2.5;
    extra.push(
      [0x0018, 0x0050, 'DS', ds(2.5)],
      [0x0020, 0x0032, 'DS', `-175\\-175\\${zpos}`],
      [0x0020, 0x0037, 'DS', '1\\0\\0\\0\\1\\0'],
      [0x0020, 0x0052, 'UI', `${study}.9`],
      [0x0020, 0x1041, 'DS', ds(zpos)],
      [0x0028, 0x0002, 'US', us(1)],
      [0x0028, 0x0004, 'CS', 'MONOCHROME2'],
      [0x0028, 0x0010, 'US', us(rows)],
      [0x0028, 0x0011, 'US', us(cols)],
      [0x0028, 0x0030, 'DS', `${(350 / size).toFixed(6)}\\${(350 / size).toFixed(6)}`],
      [0x0028, 0x0100, 'US', us(16)],
      [0x0028, 0x0101, 'US', us(16)],
      [0x0028, 0x0102, 'US', us(15)],
      [0x0028, 0x0103, 'US', us(1)],
      [0x0028, 0x1050, 'DS', '40'],
      [0x0028, 0x1051, 'DS', '400'],
      [0x0028, 0x1052, 'DS', '-1024'],
      [0x0028, 0x1053, 'DS', '1'],
      [0x0028, 0x1054, 'LO', 'HU'],
    );
  } else if (kind === 'us') {
    rows = Math.round(size * 0.75);
    px = Buffer.alloc(rows * cols * frames);
    for (let f = 0; f < frames; f++) {
      const r = rows * (0.15 + 0.25 * (0.5 + 0.5 * Math.sin((f / frames) * 2 * Math.PI)));
      for (let y = 0; y < rows; y++) {
        for (let x = 0; x < cols; x++) {
          const d = Math.hypot(x - cols / 2, y - rows * 0.1);
          const inFan = y > rows * 0.1 && Math.abs(x - cols / 2) < (y - rows * 0.1) * 0.9;
          px[f * rows * cols + y * cols + x] = !inFan ? 0 : Math.abs(d - r - rows * 0.3) < 4 ? 240 : 40 + ((x * 31 + y * 17 + f * 7) % 50);
        }
      }
    }
    extra.push(
      [0x0018, 0x1063, 'DS', ds(frameTime)],
      [0x0028, 0x0002, 'US', us(1)],
      [0x0028, 0x0004, 'CS', 'MONOCHROME2'],
      [0x0028, 0x0008, 'IS', ds(frames)],
      [0x0028, 0x0009, 'AT', Buffer.from([0x18, 0x00, 0x63, 0x10])],
      [0x0028, 0x0010, 'US', us(rows)],
      [0x0028, 0x0011, 'US', us(cols)],
      [0x0028, 0x0100, 'US', us(8)],
      [0x0028, 0x0101, 'US', us(8)],
      [0x0028, 0x0102, 'US', us(7)],
      [0x0028, 0x0103, 'US', us(0)],
    );
  } else {
    rows = Math.round(size * 1.2);
    px = Buffer.alloc(rows * cols * 2);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        const bx = (x - cols / 2) / (cols * 0.4);
        const by = (y - rows / 2) / (rows * 0.45);
        let v = 300;
        if (bx * bx + by * by < 1) {
          v = 2200;
          for (const side of [-1, 1]) {
            const lx = (x - cols / 2 - side * cols * 0.18) / (cols * 0.14);
            const ly = (y - rows * 0.45) / (rows * 0.28);
            if (lx * lx + ly * ly < 1) v = 900 + 300 * Math.abs(Math.sin(y / 14));
          }
          if (Math.abs(x - cols / 2) < cols * 0.04) v = 3200;
        }
        px.writeUInt16LE(Math.min(4095, Math.round(v + ((x * 13 + y * 7) % 60))), (y * cols + x) * 2);
      }
    }
    extra.push(
      [0x0028, 0x0002, 'US', us(1)],
      [0x0028, 0x0004, 'CS', 'MONOCHROME2'],
      [0x0028, 0x0010, 'US', us(rows)],
      [0x0028, 0x0011, 'US', us(cols)],
      [0x0028, 0x0100, 'US', us(16)],
      [0x0028, 0x0101, 'US', us(12)],
      [0x0028, 0x0102, 'US', us(11)],
      [0x0028, 0x0103, 'US', us(0)],
      [0x0028, 0x1050, 'DS', '1900'],
      [0x0028, 0x1051, 'DS', '3000'],
    );
  }
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', sopClass),
    element(0x0002, 0x0003, 'UI', instance),
    element(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
    element(0x0002, 0x0012, 'UI', '1.2.826.0.1.3680043.10.1'),
  ]);
  const items = [
    [0x0008, 0x0005, 'CS', 'ISO_IR 192'],
    [0x0008, 0x0016, 'UI', sopClass],
    [0x0008, 0x0018, 'UI', instance],
    [0x0008, 0x0020, 'DA', '20261201'],
    [0x0008, 0x0030, 'TM', '101500'],
    [0x0008, 0x0060, 'CS', modality],
    [0x0008, 0x1030, 'LO', '胸部 CT 平扫'],
    [0x0008, 0x103e, 'LO', description || modality],
    [0x0010, 0x0010, 'PN', patientName],
    [0x0010, 0x0020, 'LO', patientId],
    [0x0010, 0x0030, 'DA', birthDate],
    [0x0010, 0x0040, 'CS', sex],
    [0x0020, 0x000d, 'UI', study],
    [0x0020, 0x000e, 'UI', series],
    [0x0020, 0x0011, 'IS', ds(seriesNumber)],
    [0x0020, 0x0013, 'IS', ds(number)],
    ...extra,
  ].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const body = Buffer.concat([...items.map(([g, e, vr, v]) => element(g, e, vr, v)), element(0x7fe0, 0x0010, kind === 'us' ? 'OB' : 'OW', px)]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), element(0x0002, 0x0000, 'UL', sl(meta.length)), meta, body]);
}

/** stowMany stores files in batches (one request per batch), a few batches at a time. */
export async function stowMany(base, token, files, batch = 20) {
  const chunks = [];
  for (let i = 0; i < files.length; i += batch) chunks.push(files.slice(i, i + batch));
  for (let i = 0; i < chunks.length; i += 3) await Promise.all(chunks.slice(i, i + 3).map((c) => stow(base, token, c)));
}
