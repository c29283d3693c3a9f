// Helpers of the live room's browser test (room.test.mjs): a county set up with the CLI, a
// live consultation started over the API, browsers signed in and joined, the viewer's
// attributes and pixels read in the page, and screenshots composed side by side.
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { chromium } from 'playwright-core';
import { apiSession, dicomInstance, outputDir, stow, tokenSecret } from './server.mjs';

export const PW = 'room-' + randomUUID().slice(0, 8);
const ROOT = '2.25.' + BigInt('0x' + randomUUID().replace(/-/g, '')).toString().slice(0, 30);
export const STUDY = `${ROOT}.1`;
export const SERIES = `${ROOT}.1.1`;
export const IMAGES = 12;

/** The people of one county's consultation: the village clinic, the township and the county doctor. */
export const PEOPLE = {
  clinic: { username: 'lan.xiuying', name: '蓝秀英' },
  township: { username: 'meng.zhiqiang', name: '蒙志强' },
  county: { username: 'wei.dongping', name: '韦东平' },
  other: { username: 'huang.li', name: '黄丽' },
  admin: { username: 'lu.jianhua', name: '陆建华' },
};

/** county sets up the sites and users with the CLI, as a county's IT person would; returns the station's token. */
export function county(cli) {
  cli(['site', 'add', '-kind', 'hospital', '-department', '放射科', 'dahua', '大化县人民医院']);
  cli(['site', 'add', '-kind', 'township', '-parent', 'dahua', 'duyang', '都阳镇卫生院']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'longshan', '龙山村卫生室']);
  cli(['site', 'add', '-kind', 'clinic', '-parent', 'duyang', 'nongla', '弄拉村卫生室']);
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'longshan', '-name', PEOPLE.clinic.name, PEOPLE.clinic.username], PW + '\n');
  cli(['user', 'add', '-roles', 'clinic', '-institution', 'nongla', '-name', PEOPLE.other.name, PEOPLE.other.username], PW + '\n');
  cli(['user', 'add', '-roles', 'doctor', '-institution', 'duyang', '-name', PEOPLE.township.name, '-title', '主治医师', '-years', '6', PEOPLE.township.username], PW + '\n');
  cli(['user', 'add', '-roles', 'admin', '-name', PEOPLE.admin.name, PEOPLE.admin.username], PW + '\n');
  cli(['user', 'add', '-roles', 'doctor', '-institution', 'dahua', '-name', PEOPLE.county.name, '-title', '副主任医师', '-years', '12', PEOPLE.county.username], PW + '\n');
  return tokenSecret(cli(['token', 'create', '-institution', 'longshan', '龙山村卫生室-CT']));
}

/**
 * liveConsultation stores a CT series from the clinic's station, has the clinic ask the county
 * hospital, invites the township doctor, and the county doctor accepts and starts it.
 * Returns the consultation's ID and a second one left scheduled (not live).
 */
export async function liveConsultation(base, token) {
  const files = Array.from({ length: IMAGES }, (_, i) =>
    dicomInstance({ study: STUDY, series: SERIES, instance: `${SERIES}.${i + 1}`, number: i + 1, patientName: '黄美玲', patientId: 'LS-0042', size: 256 }));
  await stow(base, token, files);
  const clinic = await apiSession(base, PEOPLE.clinic.username, PW);
  const county = await apiSession(base, PEOPLE.county.username, PW);
  const township = await apiSession(base, PEOPLE.township.username, PW);
  const countyId = (await county('GET', '/api/session')).body.user.id;
  const townshipId = (await township('GET', '/api/session')).body.user.id;
  const dahua = (await clinic('GET', '/api/institutions')).body.find((i) => i.code === 'dahua');
  const ask = async () => {
    const r = await clinic('POST', '/api/consultations', {
      patient: { id: 'LS-0042', name: '黄美玲', sex: 'F', birthDate: '19680412' }, studyUIDs: [STUDY], clinicalQuestion: '咳嗽、胸闷一月，CT 示右肺阴影。',
      purpose: '明确诊断', urgency: 'urgent', targetInstitutionId: dahua.id, consentConfirmed: true, recordingConsent: false,
    });
    if (r.status !== 201) throw new Error(`request: ${r.status} ${JSON.stringify(r.body)}`);
    const id = r.body.id;
    const inv = await clinic('POST', `/api/consultations/${id}/participants`, { userId: townshipId });
    if (inv.status !== 200) throw new Error(`invite: ${inv.status} ${JSON.stringify(inv.body)}`);
    const acc = await county('POST', `/api/consultations/${id}/accept`, { doctorId: countyId, scheduledAt: new Date(Date.now() + 3600_000).toISOString() });
    if (acc.status !== 200) throw new Error(`accept: ${acc.status} ${JSON.stringify(acc.body)}`);
    return id;
  };
  const id = await ask();
  const st = await county('POST', `/api/consultations/${id}/start`);
  if (st.status !== 200) throw new Error(`start: ${st.status} ${JSON.stringify(st.body)}`);
  const scheduled = await ask();
  return { id, scheduled };
}

/** signIn signs a page in through the sign-in screen and opens path. */
export async function signIn(page, base, username, to) {
  await page.goto(`${base}/sign-in?next=${encodeURIComponent(to)}`);
  await page.getByRole('textbox', { name: '用户名' }).fill(username);
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL((u) => u.pathname === to.split('?')[0]);
}

/** waitFor polls fn in the page (may be async) until it returns a truthy value, which it returns. */
export async function waitFor(page, fn, arg, what, timeout = 30_000) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await h.jsonValue();
  } catch (err) {
    const diag = await page.evaluate(() => JSON.stringify({ status: window.sanping?.status, me: window.sanping?.me, seq: window.sanping?.seq, errors: window.sanping?.errors })).catch(() => '');
    throw new Error(`${what}: ${err.message.split('\n')[0]} ${diag}`);
  }
}

/** decodesOthers waits until the page decodes n others' video, each past frames. */
export function decodesOthers(page, n, frames = 20, what = 'decodes the others') {
  return waitFor(page, async ([n, frames]) => {
    const f = await window.sanping.framesDecoded();
    const v = Object.values(f);
    return v.length === n && v.every((x) => x > frames) && f;
  }, [n, frames], what, 90_000);
}

/** viewerAttrs reads the viewer's data attributes (the element that carries data-seq). */
export function viewerAttrs(page) {
  return page.evaluate(() => {
    const el = document.querySelector('.room-viewer [data-seq]');
    if (!el) return null;
    const d = el.dataset;
    return { seq: Number(d.seq), frame: d.frame, instance: d.instance, windowCenter: d.windowCenter, windowWidth: d.windowWidth };
  });
}

/**
 * watchSeq records, in the page, when the viewer's data-seq first reached each value
 * (Date.now(), the machine's clock, which the driver's op.sent also reads).
 */
export function watchSeq(page) {
  return page.evaluate(() => {
    window.seqSeen = [];
    const el = document.querySelector('.room-viewer [data-seq]');
    const note = () => window.seqSeen.push({ seq: Number(el.dataset.seq), t: Date.now() });
    note();
    new MutationObserver(note).observe(el, { attributes: true, attributeFilter: ['data-seq'] });
    return true;
  });
}

/** delays: for each op the driver sent, from its send to the follower's viewer showing its seq (ms). */
export function delays(driverOps, seen) {
  const out = [];
  for (const op of driverOps) {
    if (!op.sent) continue;
    const at = seen.find((s) => s.seq >= op.seq);
    if (at) out.push(at.t - op.sent);
  }
  return out;
}

export function percentile(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/**
 * viewerPixels draws the viewer's canvas into a 32 x 32 2D canvas and returns its grey levels:
 * screens of different sizes compare on the same grid.
 */
export function viewerPixels(page) {
  return page.evaluate(() => {
    const root = document.querySelector('.room-viewer');
    const src = root?.querySelector('.pane[data-pane="0"] canvas') ?? root?.querySelector('canvas') ?? root?.querySelector('img');
    if (!src) return null;
    const n = 32;
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

/** pixelDiff is the mean absolute difference of two grey grids (0..255). */
export function pixelDiff(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

/** sideBySide composes screenshots (PNG buffers) into one PNG with a 2D canvas in a page. */
export async function sideBySide(page, pngs, labels, name) {
  const urls = pngs.map((b) => 'data:image/png;base64,' + b.toString('base64'));
  const dataURL = await page.evaluate(async ({ urls, labels }) => {
    const imgs = await Promise.all(urls.map((u) => new Promise((r) => { const i = new Image(); i.onload = () => r(i); i.src = u; })));
    const gap = 16;
    const head = 36;
    const w = imgs.reduce((s, i) => s + i.width, 0) + gap * (imgs.length - 1);
    const h = Math.max(...imgs.map((i) => i.height)) + head;
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const g = c.getContext('2d');
    g.fillStyle = '#333';
    g.fillRect(0, 0, w, h);
    g.font = '22px sans-serif';
    let x = 0;
    imgs.forEach((img, k) => {
      g.fillStyle = '#fff';
      g.fillText(labels[k], x + 8, 26);
      g.drawImage(img, x, head);
      x += img.width + gap;
    });
    return c.toDataURL('image/png');
  }, { urls, labels });
  fs.mkdirSync(outputDir, { recursive: true });
  const file = path.join(outputDir, `${name}.png`);
  fs.writeFileSync(file, Buffer.from(dataURL.split(',')[1], 'base64'));
  return file;
}

/**
 * launchBrowserWithoutMedia is launchBrowser (server.mjs) on a network where media cannot reach
 * the server: every peer connection may use relay candidates only, and the test server has no
 * TURN, as when UDP is blocked and no relay answers. (Chromium's
 * --force-webrtc-ip-handling-policy did not keep loopback media from connecting.)
 */
export async function launchBrowserWithoutMedia() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) return null;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1366, height: 768 },
    locale: 'zh-CN',
  });
  await context.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Native {
      constructor(config = {}) {
        super({ ...config, iceTransportPolicy: 'relay' });
      }
    };
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
