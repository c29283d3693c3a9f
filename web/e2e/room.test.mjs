// The live room (三屏联动) in three headless Chromiums against bin/sanping: the village
// clinic (through the pre-call check), the township doctor and the county doctor (joining
// at once with ?auto=1) in one live consultation. Each decodes the other two's video; the
// county doctor scrolls, windows and draws in the viewer and the other two screens follow
// (data attributes and pixels), with the delay measured; a reload comes back to the same
// view; the seat is handed over; an unfollowed screen is not moved. Screenshots:
// web/test-output/room-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startProxy, launchBrowser, shoot, apiSession, DESKTOP, PHONE } from './server.mjs';
import {
  PEOPLE, PW, county, liveConsultation, launchBrowserWithoutMedia, signIn, waitFor, decodesOthers, viewerAttrs, watchSeq, delays, percentile, viewerPixels, pixelDiff, sideBySide,
} from './room.mjs';

let server;
let ids;
const who = {}; // clinic, township, county -> { browser, page, me }
const pageErrors = [];

before(async () => {
  let token = '';
  server = await startServer((cli) => {
    token = county(cli);
  });
  ids = await liveConsultation(server.base, token);
  for (const k of ['clinic', 'township', 'county']) {
    const browser = await launchBrowser();
    if (!browser) return;
    const page = await browser.context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${k}: ${err}`));
    page.on('console', (msg) => {
      if (/Content.Security.Policy/i.test(msg.text())) pageErrors.push(`${k}: ${msg.text()}`);
    });
    who[k] = { browser, page };
  }
}, { timeout: 120_000 });

after(async () => {
  for (const w of Object.values(who)) await w.browser.close();
  await server?.stop();
});

const T = { timeout: 180_000 };
const skip = () => !who.county && 'no Chromium at /usr/bin/chromium';
const room = () => `/consultations/${ids.id}/live`;
const followers = () => [who.clinic, who.township];

async function sameView(driver, others, what) {
  // The driver's viewer first shows the room's latest (its attributes follow its render).
  await waitFor(driver.page, () => {
    const d = document.querySelector('.room-viewer [data-seq]')?.dataset;
    const v = window.sanping.shown;
    return d && Number(d.seq) === window.sanping.seq && d.instance === (v.image.instance ?? d.instance) &&
      (v.window.width === 0 || (d.windowCenter === String(v.window.center) && d.windowWidth === String(v.window.width)));
  }, null, `${what}: the driver's viewer shows the room's view`);
  const want = await viewerAttrs(driver.page);
  for (const o of others) {
    await waitFor(o.page, (w) => {
      window.lastAttrs = { ...document.querySelector('.room-viewer [data-seq]')?.dataset };
      const el = document.querySelector('.room-viewer [data-seq]');
      const d = el?.dataset;
      return d && Number(d.seq) >= w.seq && d.frame === w.frame && d.instance === w.instance && d.windowCenter === w.windowCenter && d.windowWidth === w.windowWidth;
    }, want, `${what}: a follower shows the driver's view ${JSON.stringify(want)}`).catch(async (err) => {
      throw new Error(`${err.message}; it shows ${JSON.stringify(await o.page.evaluate(() => window.lastAttrs))}`);
    });
  }
  return want;
}

test('the three join (the clinic through the pre-call check) and each decodes the other two', T, async (t) => {
  if (skip()) return t.skip(skip());
  await signIn(who.county.page, server.base, PEOPLE.county.username, room() + '?auto=1');
  await signIn(who.township.page, server.base, PEOPLE.township.username, room() + '?auto=1');
  // The clinic sees the check: its camera, the microphone's level, the network, then joins.
  const c = who.clinic.page;
  await signIn(c, server.base, PEOPLE.clinic.username, room());
  await c.getByRole('heading', { name: '加入前检查' }).waitFor();
  await waitFor(c, () => document.querySelector('video.preview')?.videoWidth > 0, null, 'the preview shows the camera');
  await waitFor(c, () => Number(document.querySelector('[role=meter]')?.getAttribute('aria-valuenow')) > 0, null, 'the fake microphone moves the meter');
  await c.getByText(/^网络检查：(直连可用|只能中继|无法连接媒体|加入后再检查)/).waitFor();
  // The imaging source: a second video device (an ultrasound capture card; here Chromium's
  // fake camera opened a second time, at the imaging feed's size).
  const imaging = c.getByRole('combobox', { name: /影像画面来源/ });
  const device = await imaging.locator('option').nth(2).getAttribute('value');
  await imaging.selectOption(device);
  await shoot(c, 'room-precall', DESKTOP);
  await c.getByRole('button', { name: '加入会诊' }).click();
  const captured = await waitFor(c, () => {
    const s = window.sanping?.pub?.getSenders().find((x) => x.track?.contentHint === 'detail')?.track?.getSettings();
    return s && `${s.width}x${s.height}@${s.frameRate}`;
  }, null, 'the clinic sends its imaging feed');
  t.diagnostic(`the clinic captures its imaging feed at ${captured}`);

  for (const [k, w] of Object.entries(who)) {
    w.me = await waitFor(w.page, () => window.sanping?.status === 'connected' && window.sanping.participants.size === 3 && window.sanping.me, null, `${k} sees three`);
  }
  for (const [k, w] of Object.entries(who)) await decodesOthers(w.page, 2, 20, `${k} decodes both others' video`);
  // The clinic's imaging feed is a wide tile at the others, larger than its face.
  for (const k of ['township', 'county']) {
    const p = who[k].page;
    const tile = p.locator('figure.tile.imaging', { hasText: `${PEOPLE.clinic.name} 的影像画面` });
    await tile.waitFor();
    const size = await waitFor(p, () => {
      const v = document.querySelector('figure.tile.imaging video');
      return v?.videoWidth > 0 && `${v.videoWidth}x${v.videoHeight}`;
    }, null, `${k} plays the imaging feed`, 60_000);
    t.diagnostic(`${k} receives the imaging feed at ${size}`);
    const face = await p.locator('figure.tile', { hasText: PEOPLE.clinic.name }).first().boundingBox();
    const wide = await tile.boundingBox();
    assert.ok(wide.width > face.width, `imaging tile ${wide.width} px wide, face ${face.width}`);
  }
  // The county doctor is the consultation's assigned doctor: the default driver.
  for (const w of Object.values(who)) await w.page.getByText(`主控：${w === who.county ? '您正在主控' : PEOPLE.county.name}`).waitFor();
  // Every viewer shows the room's first image.
  for (const [k, w] of Object.entries(who)) {
    await waitFor(w.page, () => document.querySelector('.room-viewer [data-seq]')?.dataset.instance, null, `${k}'s viewer shows an image`, 60_000);
  }
});

test("the county doctor drives the viewer; the others follow (attributes, pixels)", T, async (t) => {
  if (skip()) return t.skip(skip());
  const d = who.county.page;
  for (const f of followers()) await watchSeq(f.page);
  const box = await d.locator('.room-viewer').boundingBox();
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  // Scroll through the series with the wheel (half notches: one image each), window by
  // dragging, draw an arrow.
  await d.mouse.move(cx, cy);
  for (let i = 0; i < 4; i++) {
    await d.mouse.wheel(0, 50);
    await d.waitForTimeout(120);
  }
  await d.mouse.move(cx, cy);
  await d.mouse.down();
  for (let i = 1; i <= 10; i++) await d.mouse.move(cx + i * 8, cy + i * 4);
  await d.mouse.up();
  await d.getByRole('button', { name: /箭头/ }).click();
  await d.mouse.move(cx - 60, cy - 60);
  await d.mouse.down();
  await d.mouse.move(cx - 20, cy - 20, { steps: 5 });
  await d.mouse.up();
  const ask = d.getByRole('dialog', { name: '标注文字' });
  await ask.getByRole('textbox').fill('病灶');
  await ask.getByRole('textbox').press('Enter');
  const want = await sameView(who.county, followers(), 'after scroll, window and arrow');
  assert.notEqual(want.instance, '', 'an image is shown');
  assert.match(want.instance, /\.5$/, 'four wheel steps from the first image');
  assert.ok(want.seq > 3, `ops were applied (seq ${want.seq})`);
  // Annotations reached both.
  for (const f of followers()) {
    await waitFor(f.page, () => Object.values(window.sanping.view.annotations).some((a) => a.kind === 'arrow'), null, 'the arrow reached a follower');
  }
  // Pixels: the followers' canvases show what the driver's shows.
  await d.waitForTimeout(500);
  const mine = await viewerPixels(d);
  assert.ok(mine, 'the driver shows pixels');
  const spread = Math.max(...mine) - Math.min(...mine);
  assert.ok(spread > 100, `the driver's canvas shows an image (grey levels spread ${spread})`);
  for (const f of followers()) {
    // The same attributes can come a frame before the canvas settles (a render in flight on
    // a loaded machine): compare again for a few seconds before calling it a difference.
    let diff = Infinity;
    for (let tries = 0; tries < 20 && diff >= 6; tries++) {
      if (tries) await d.waitForTimeout(250);
      diff = pixelDiff(await viewerPixels(d), await viewerPixels(f.page));
    }
    t.diagnostic(`pixel difference to the driver: ${diff.toFixed(2)} / 255`);
    assert.ok(diff < 6, `a follower's pixels differ by ${diff.toFixed(2)} on average`);
  }
  // The delay from the driver's send to each follower's viewer showing it (one machine's clock).
  const mineOps = (await d.evaluate(() => window.sanping.lastOps)).filter((o) => o.by === who.county.me);
  const all = [];
  for (const f of followers()) all.push(...delays(mineOps, await f.page.evaluate(() => window.seqSeen)));
  const p50 = percentile(all, 50);
  const p95 = percentile(all, 95);
  // Where it goes: to the follower's client (socket and server) and on to its viewer's attribute.
  const socket = [];
  for (const f of followers()) {
    const theirs = await f.page.evaluate(() => window.sanping.lastOps);
    for (const op of mineOps) {
      const a = theirs.find((x) => x.seq === op.seq);
      if (a && op.sent) socket.push(a.applied - op.sent);
    }
  }
  console.log(`# of which to the follower's client: p50=${percentile(socket, 50)} ms p95=${percentile(socket, 95)} ms`);
  const byKind = {};
  for (const f of followers()) {
    const seen = await f.page.evaluate(() => window.seqSeen);
    for (const op of mineOps) (byKind[op.kind] ??= []).push(...delays([op], seen));
  }
  console.log(`# by kind (ms, sorted): ${Object.entries(byKind).map(([k, v]) => `${k} ${v.sort((a, b) => a - b).join(',')}`).join('; ')}`);
  console.log(`# op delay driver -> follower's viewer: n=${all.length} p50=${p50} ms p95=${p95} ms (target p50 <= 50, p95 <= 150: bench/web-room-sync.mjs measures it)`);
  assert.ok(all.length >= mineOps.length, `a delay for every op (${all.length} of ${mineOps.length * 2})`);

  const shots = [];
  for (const k of ['clinic', 'township', 'county']) {
    shots.push(await who[k].page.screenshot());
    await shoot(who[k].page, `room-${k}`, DESKTOP);
  }
  const file = await sideBySide(who.county.page, shots, ['村卫生室 蓝秀英', '乡镇卫生院 蒙志强', '县医院 韦东平（主控）'], 'room-three-screens');
  t.diagnostic(`screenshot ${file}`);
});

test('a reload comes back as the same participant, at the same view', T, async (t) => {
  if (skip()) return t.skip(skip());
  const p = who.township.page;
  const before = await viewerAttrs(who.county.page);
  await p.reload();
  await waitFor(p, (me) => window.sanping?.status === 'connected' && window.sanping.me === me, who.township.me, 'the township is back as itself');
  await sameView(who.county, [who.township], 'after the reload');
  const after = await viewerAttrs(p);
  assert.equal(after.instance, before.instance);
  await decodesOthers(p, 2, 10, 'the township decodes again');
});

test('the seat is asked for and handed over; the new driver moves the others', T, async (t) => {
  if (skip()) return t.skip(skip());
  const town = who.township.page;
  const cty = who.county.page;
  await town.getByRole('button', { name: '申请主控' }).click();
  await town.getByText('已申请，等待主控同意').waitFor();
  await cty.getByRole('button', { name: `交给 ${PEOPLE.township.name}` }).click();
  await town.getByText('主控：您正在主控').waitFor();
  await cty.getByText(`主控：${PEOPLE.township.name}`).waitFor();
  await who.clinic.page.getByText(`主控：${PEOPLE.township.name}`).waitFor();
  // The township's change reaches the others.
  await town.evaluate(() => window.sanping.sendOp({ kind: 'window', window: { center: 321, width: 654 } }));
  for (const o of [who.county, who.clinic]) {
    await waitFor(o.page, () => window.sanping.view.window.center === 321, null, 'the new driver\'s window reached the others');
  }
  await sameView(who.township, [who.county, who.clinic], 'the new driver');
  // The assigned county doctor takes it back.
  await cty.getByRole('button', { name: '收回主控' }).click();
  await cty.getByText('主控：您正在主控').waitFor();
});

test('an unfollowed screen is not moved; following again jumps to the room', T, async (t) => {
  if (skip()) return t.skip(skip());
  const c = who.clinic.page;
  await c.getByLabel('跟随主控画面').uncheck();
  await c.getByText('自由浏览中').waitFor();
  const held = await viewerAttrs(c);
  await who.county.page.evaluate(() => window.sanping.sendOp({ kind: 'window', window: { center: 77, width: 777 } }));
  await waitFor(who.township.page, () => window.sanping.view.window.center === 77, null, 'the township follows');
  await waitFor(c, () => window.sanping.view.window.center === 77, null, 'the clinic still knows the room');
  await c.waitForTimeout(300);
  const still = await viewerAttrs(c);
  assert.equal(still.windowCenter, held.windowCenter, 'the unfollowed viewer was not moved');
  await c.getByLabel('跟随主控画面').check();
  await sameView(who.county, [who.clinic], 'following again');
  assert.equal((await viewerAttrs(c)).windowCenter, '77');
});

test('chat reaches everyone', T, async (t) => {
  if (skip()) return t.skip(skip());
  const c = who.clinic.page;
  await c.getByRole('textbox', { name: '输入消息，回车发送' }).fill('患者咳嗽一个月，请看右肺。');
  await c.getByRole('textbox', { name: '输入消息，回车发送' }).press('Enter');
  for (const w of Object.values(who)) await w.page.getByRole('region', { name: '文字交流' }).getByText('患者咳嗽一个月，请看右肺。').waitFor();
});

test("the websocket cut for 3 s: a banner meanwhile, then the room's view again; chat goes on", T, async (t) => {
  if (skip()) return t.skip(skip());
  const proxy = await startProxy(server.base);
  try {
    // The clinic's page over a link that can be cut (a new participant: another origin, another tab's token).
    const c = who.clinic.page;
    await c.goto(`${proxy.base}${room()}?auto=1`);
    const me = await waitFor(c, () => window.sanping?.status === 'connected' && window.sanping.me, null, 'the clinic joins over the proxy');
    // The viewer has its images before the cut (this test is about the room's socket).
    await waitFor(c, () => {
      const d = document.querySelector('.room-viewer [data-seq]')?.dataset;
      return d?.instance && d.loaded && d.loaded === d.total;
    }, null, "the clinic's viewer has the series", 60_000);
    const cut = proxy.cut(3000);
    await c.getByText('网络中断，正在重新连接。恢复后会回到会诊中的画面。').waitFor({ timeout: 5000 });
    await who.county.page.evaluate(() => window.sanping.sendOp({ kind: 'window', window: { center: 555, width: 1555 } }));
    await cut;
    await waitFor(c, (me) => window.sanping.status === 'connected' && window.sanping.me === me && window.sanping.view.window.center === 555 && window.sanping.reconnects >= 1,
      me, 'the clinic is back as itself with the view it missed', 15_000);
    await c.getByText('网络中断，正在重新连接').waitFor({ state: 'hidden' });
    // Only the websocket went: the peer connections were kept (keepMedia), video still decodes.
    const before = await c.evaluate(() => window.sanping.framesDecoded());
    await waitFor(c, async (b) => {
      const now = await window.sanping.framesDecoded();
      return Object.keys(b).length === 2 && Object.entries(b).every(([p, n]) => now[p] > n + 10);
    }, before, 'the clinic still decodes both others after the cut', 30_000);
    await sameView(who.county, [who.clinic], 'after the cut');
    await c.getByRole('textbox', { name: '输入消息，回车发送' }).fill('网络恢复了。');
    await c.getByRole('textbox', { name: '输入消息，回车发送' }).press('Enter');
    await who.county.page.getByText('网络恢复了。').waitFor();
  } finally {
    await proxy.close();
  }
});

test("a user who may not see it, and a consultation not in session, are told in words", T, async (t) => {
  if (skip()) return t.skip(skip());
  const b = await launchBrowser();
  try {
    const p = await b.context.newPage();
    await signIn(p, server.base, PEOPLE.other.username, room());
    await p.getByRole('alert').filter({ hasText: '找不到这场会诊，或您无权加入。' }).waitFor();
    await p.goto(`${server.base}/sign-in`).catch(() => undefined);
    const q = await who.clinic.browser.context.newPage();
    await q.goto(`${server.base}/consultations/${ids.scheduled}/live`);
    await q.getByRole('alert').filter({ hasText: /不在进行中（已预约）/ }).waitFor();
    await q.close();
  } finally {
    await b.close();
  }
});

test('the room on a phone: the viewer first, then videos, participants and chat', T, async (t) => {
  if (skip()) return t.skip(skip());
  const p = who.township.page;
  await shoot(p, 'room-township-phone', PHONE);
  const viewer = await p.locator('.room-viewer').boundingBox();
  const chat = await p.getByRole('region', { name: '文字交流' }).boundingBox();
  assert.ok(viewer.width >= PHONE.width - 2 && chat.y > viewer.y + viewer.height - 1, `viewer ${JSON.stringify(viewer)}, chat ${JSON.stringify(chat)}`);
  await p.setViewportSize(DESKTOP);
});

test('where media cannot reach the server, the page says so; view sync and chat go on', T, async (t) => {
  if (skip()) return t.skip(skip());
  const b = await launchBrowserWithoutMedia();
  try {
    const p = await b.context.newPage();
    p.on('pageerror', (err) => pageErrors.push(`admin: ${err}`));
    await signIn(p, server.base, PEOPLE.admin.username, room() + '?auto=1');
    await waitFor(p, () => window.sanping?.status === 'connected', null, 'the admin joins');
    await p.getByText('音视频暂时无法连接，看图和文字交流仍可使用。').waitFor({ timeout: 30_000 }).catch(async (err) => {
      const d = await p.evaluate(async () => ({ sub: window.sanping.sub?.connectionState, pub: window.sanping.pub?.connectionState, tl: window.sanping.timeline,
        frames: await window.sanping.framesDecoded() }));
      throw new Error(`${err.message.split('\n')[0]} ${JSON.stringify(d)}`);
    });
    await waitFor(p, () => document.querySelector('.room-viewer [data-seq]')?.dataset.instance, null, "the admin's viewer shows an image", 60_000);
    await who.county.page.evaluate(() => window.sanping.sendOp({ kind: 'window', window: { center: 66, width: 666 } }));
    await sameView(who.county, [{ page: p }], 'without media');
    await p.getByRole('textbox', { name: '输入消息，回车发送' }).fill('我这里没有视频，但能看到图像。');
    await p.getByRole('textbox', { name: '输入消息，回车发送' }).press('Enter');
    await who.county.page.getByText('我这里没有视频，但能看到图像。').waitFor();
    await shoot(p, 'room-no-media', DESKTOP);
  } finally {
    await b.close();
  }
});

test('ending the session closes the room on every screen, in words', T, async (t) => {
  if (skip()) return t.skip(skip());
  const api = await apiSession(server.base, PEOPLE.county.username, PW);
  const r = await api('POST', `/api/consultations/${ids.id}/finish`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const k of ['township', 'county']) {
    await who[k].page.getByRole('alert').filter({ hasText: '会诊已结束，会诊室已关闭。' }).waitFor();
    assert.equal(await who[k].page.evaluate(() => window.sanping.status), 'ended');
  }
});

test('no uncaught error and no CSP violation in any room screen', (t) => {
  if (skip()) return t.skip(skip());
  assert.deepEqual(pageErrors, []);
});
