// View sync in the live room (issue 14's speed target): how long a driver's operation takes
// to be drawn on the other screens, in headless Chromium against bin/sanping.
//   loopback follower                                  target p50 <= 50 ms, p95 <= 150 ms
//   follower behind an emulated 4G link (10 Mbit/s,    target p50 <= RTT + 50 ms
//   80 ms RTT; web/e2e/server.mjs startProxy: token
//   buckets and a one-way delay in node timers)
// The county doctor (the driver, loopback) steps through the series with the keyboard and
// drags the window in the real viewer; each follower's viewer attribute data-seq is watched
// (MutationObserver, Date.now()) and compared with the op's `sent` stamp taken by the
// driver's page: both pages read this machine's clock. The followers' websockets, pages and
// frames all go through their link (the 4G one's images too, loaded before measuring).
//
//   make web && make build && node bench/web-room-sync.mjs
//   OPS=120 RTT_MS=80 GAP_MS=33 node bench/web-room-sync.mjs
import { startServer, startProxy, launchBrowser } from '../web/e2e/server.mjs';
import { PEOPLE, county, liveConsultation, signIn, waitFor, watchSeq, delays, percentile } from '../web/e2e/room.mjs';

const OPS = Number(process.env.OPS ?? 80);
const RTT = Number(process.env.RTT_MS ?? 80);
const RATE = Number(process.env.DOWN_MBIT ?? 10) * 1e6;
// Time between the driver's inputs: 200 ms is reading (about five steps a second), 33 ms a
// continuous drag or a held arrow key.
const GAP = Number(process.env.GAP_MS ?? 200);

let token = '';
const server = await startServer((cli) => {
  token = county(cli);
});
const browsers = [];
let proxy;
try {
  const { id } = await liveConsultation(server.base, token);
  proxy = await startProxy(server.base, { rateBitsPerSecond: RATE, delayMs: RTT / 2 });
  const room = `/consultations/${id}/live?auto=1`;
  const join = async (who, base) => {
    const b = await launchBrowser();
    if (!b) throw new Error('no Chromium at /usr/bin/chromium');
    browsers.push(b);
    const page = await b.context.newPage();
    await signIn(page, base, who.username, room);
    await waitFor(page, () => window.sanping?.status === 'connected' && document.querySelector('.room-viewer [data-seq]')?.dataset.instance, null, `${who.username} joins`, 90_000);
    // Every image of the series in this browser's cache first: the delay measured is the
    // sync's, not a first download.
    await waitFor(page, () => {
      const d = document.querySelector('.room-viewer [data-loaded]')?.dataset;
      return d && Number(d.loaded) > 0 && d.loaded === d.total;
    }, null, `${who.username} has the series`, 120_000);
    return page;
  };
  const driver = await join(PEOPLE.county, server.base);
  const near = await join(PEOPLE.clinic, server.base);
  const far = await join(PEOPLE.township, proxy.base);
  for (const f of [near, far]) await watchSeq(f);
  // The far follower's round trip as its page sees it: a small request on a kept-alive
  // connection through the link.
  const rtt = await far.evaluate(async () => {
    const xs = [];
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await fetch('/healthz', { cache: 'no-store' });
      xs.push(performance.now() - t0);
    }
    return xs.slice(1).sort((a, b) => a - b)[2];
  });

  const box = await driver.locator('.room-viewer').boundingBox();
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  await driver.mouse.click(cx, cy);
  // Alternate: two steps through the series (keyboard), then a short window drag: the ops a
  // reading doctor sends, about five a second.
  for (let i = 0; i < OPS; i++) {
    if (i % 3 === 2) {
      await driver.mouse.move(cx, cy);
      await driver.mouse.down();
      await driver.mouse.move(cx + 6 * (i % 2 ? 1 : -1), cy + 4);
      await driver.mouse.up();
    } else {
      await driver.keyboard.press(Math.floor(i / 12) % 2 ? 'ArrowUp' : 'ArrowDown');
    }
    await driver.waitForTimeout(GAP);
  }
  await driver.waitForTimeout(1500);
  const me = await driver.evaluate(() => window.sanping.me);
  const mine = (await driver.evaluate(() => window.sanping.lastOps)).filter((o) => o.by === me);
  const report = (name, xs) => `${name}: n=${xs.length} p50 ${percentile(xs, 50)} ms, p95 ${percentile(xs, 95)} ms, max ${Math.max(...xs)} ms`;
  const nearD = delays(mine, await near.evaluate(() => window.seqSeen));
  const farD = delays(mine, await far.evaluate(() => window.seqSeen));
  console.log(`ops sent by the driver: ${mine.length} (of ${OPS} inputs ${GAP} ms apart; window drags coalesce per frame)`);
  console.log(report('loopback follower', nearD) + '  (target p50 <= 50, p95 <= 150)');
  console.log(report(`4G follower (${RATE / 1e6} Mbit/s, ${RTT} ms RTT; measured ${rtt.toFixed(0)} ms)`, farD) + `  (target p50 <= ${RTT + 50})`);
} finally {
  for (const b of browsers) await b.close();
  await proxy?.close();
  await server.stop();
}
