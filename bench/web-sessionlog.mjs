// The admin's session page (issue 15's speed target) in headless Chromium against bin/sanping:
// a session of 2 hours with 5 participants, each with a client sample every 2 s and a server
// sample every 5 s (5,040 samples each, 25,200 in all), drawn as 7 uPlot charts:
//   quality charts drawn after the page's data arrived                     target <= 500 ms
// "Arrived" is the Resource Timing responseEnd of GET /api/session-logs/{id} (the last
// byte); "drawn" is the 7th chart's first draw hook (.quality-charts[data-drawn-ms]), so the
// JSON parse, the alignment of the samples on one axis and the drawing all count.
// The page's data is generated here and answered by the browser's request interception for
// the one session-log request (a real server session would take 2 hours to record); the rest
// (the app, sign-in, the route's chunk, uPlot) comes from the real server.
//
//   make web && make build && node bench/web-sessionlog.mjs
//   RUNS=9 PARTICIPANTS=5 HOURS=2 node bench/web-sessionlog.mjs
import { randomUUID } from 'node:crypto';
import { startServer, launchBrowser } from '../web/e2e/server.mjs';

const RUNS = Number(process.env.RUNS ?? 7);
const PARTICIPANTS = Number(process.env.PARTICIPANTS ?? 5);
const HOURS = Number(process.env.HOURS ?? 2);
const PW = 'bench-' + randomUUID().slice(0, 8);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `median ${median(xs).toFixed(0)} ms (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)}; ${xs.map((x) => x.toFixed(0)).join(', ')})`;

// The session page as GET /api/session-logs/{id} answers it (docs/openapi.yaml SessionLog).
function sessionPage(id) {
  const start = Date.UTC(2026, 11, 7, 1, 0, 0);
  const end = start + HOURS * 3600_000;
  const rnd = (() => {
    let s = 7;
    return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  })();
  const quality = [];
  const timeline = [];
  for (let k = 0; k < PARTICIPANTS; k++) {
    const q = { participant: `p${k}`, username: `user${k}`, t: [], bitrateIn: [], bitrateOut: [], loss: [], rttMs: [], jitterMs: [], fps: [], width: [], height: [], source: [], resumes: [] };
    const times = [];
    for (let t = start + k * 97; t < end; t += 2000) times.push(t);
    for (let t = start + 1000 + k * 97; t < end; t += 5000) times.push(t);
    times.sort((a, b) => a - b);
    for (const t of times) {
      q.t.push(t);
      q.bitrateIn.push(Math.round(600_000 + 400_000 * rnd()));
      q.bitrateOut.push(Math.round(900_000 + 300_000 * rnd()));
      q.loss.push(rnd() < 0.9 ? 0.01 * rnd() : 0.1 * rnd());
      q.rttMs.push(150 + 150 * rnd());
      q.jitterMs.push(5 + 30 * rnd());
      q.fps.push(15 + 15 * rnd());
      q.width.push(1280);
      q.height.push(720);
      q.source.push('client'); // all drawn: the worst case
    }
    q.resumes.push(start + 1800_000 + k * 60_000);
    quality.push(q);
    timeline.push({ seq: k + 1, time: new Date(start + k * 1000).toISOString(), type: 'join', action: 'live.join', actor: `user${k}`, role: k ? 'clinic' : 'doctor',
      institution: 'dahua', participant: `p${k}`, ip: `10.0.0.${k + 2}`, userAgent: 'Chrome', connection: 'udp', detail: 'web' });
  }
  return {
    consultation: { id, state: 'signed', patient: { id: 'B1', name: '测试' }, studyUIDs: [], clinicalQuestion: '右肺结节？', purpose: '会诊', urgency: 'routine',
      targetInstitutionId: 1, consentConfirmed: true, requestingInstitutionId: 2, requestedBy: 2, requestedByName: 'clinic', participants: [],
      createdAt: new Date(start).toISOString(), updatedAt: new Date(end).toISOString(), sessions: [{ start: new Date(start).toISOString(), end: new Date(end).toISOString() }] },
    timeline, chat: [], report: { state: 'none' }, recordings: [], quality,
  };
}

const server = await startServer((cli) => {
  cli(['user', 'add', '-roles', 'admin', '-name', '陆建华', 'lu.jianhua'], PW + '\n');
});
let browser;
try {
  browser = await launchBrowser();
  if (!browser) throw new Error('no Chromium at /usr/bin/chromium');
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1400, height: 1000 });
  const body = JSON.stringify(sessionPage(1));
  const samples = JSON.parse(body).quality.reduce((n, q) => n + q.t.length, 0);
  console.log(`session page: ${PARTICIPANTS} participants, ${HOURS} h, ${samples} samples, ${(body.length / 1e6).toFixed(1)} MB of JSON`);
  await page.route(/\/api\/session-logs\/1$/, (route) => route.fulfill({ status: 200, contentType: 'application/json', body }));
  await page.goto(server.base + '/sign-in');
  await page.getByRole('textbox', { name: '用户名' }).fill('lu.jianhua');
  await page.getByLabel('密码', { exact: true }).fill(PW);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.waitForURL(/\/admin\//);
  const drawn = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto(server.base + '/admin/session-logs/1');
    const el = await page.waitForSelector('.quality-charts[data-drawn-ms]', { timeout: 60_000 });
    const ms = Number(await el.getAttribute('data-drawn-ms'));
    const arrivedFromTiming = await page.evaluate(() => performance.getEntriesByType('resource').some((e) => e.name.endsWith('/api/session-logs/1') && e.responseEnd > 0));
    if (!arrivedFromTiming) console.log('# note: no resource timing for the intercepted request; measured from after the fetch resolved');
    drawn.push(ms);
  }
  console.log(`(a) quality charts drawn after the data arrived: ${fmt(drawn)}   target <= 500 ms`);
} finally {
  await browser?.close();
  await server.stop();
}
