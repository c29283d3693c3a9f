// The emulated link of startProxy (server.mjs), without a browser or the server: bytes arrive
// whole and in order through jitter and loss, the rate holds each way, and a cut refuses.
// Ranges are generous: the machine is shared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startProxy } from './server.mjs';

/** A target that echoes, or sends send bytes and ends. */
async function target(send = 0) {
  const server = net.createServer((c) => {
    c.on('error', () => {});
    if (send) c.end(Buffer.alloc(send));
    else c.pipe(c);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** exchange connects through proxy, writes out and reads until want bytes or the end. */
function exchange(proxy, out, want) {
  return new Promise((resolve, reject) => {
    const { port } = new URL(proxy.base);
    const c = net.connect(Number(port), '127.0.0.1');
    const got = [];
    let n = 0;
    c.on('data', (d) => {
      got.push(d);
      n += d.length;
      if (n >= want) {
        c.destroy();
        resolve(Buffer.concat(got));
      }
    });
    c.on('end', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
    if (out) c.write(out);
  });
}

test('order is kept through jitter and loss', async () => {
  const t = await target();
  const proxy = await startProxy(t.base, { delayMs: 5, jitterMs: 20, loss: 0.05, rateBitsPerSecond: 20e6, seed: 7 });
  try {
    const out = Buffer.alloc(256 * 1024);
    for (let i = 0; i < out.length; i++) out[i] = (i * 7) >> 2;
    const back = await exchange(proxy, out, out.length);
    assert.ok(back.equals(out), 'bytes came back changed or out of order');
    const segments = (2 * out.length) / 1460;
    const lost = proxy.lost.up + proxy.lost.down;
    assert.ok(lost > segments * 0.05 * 0.4 && lost < segments * 0.05 * 1.6, `${lost} of ${segments.toFixed(0)} segments lost`);
  } finally {
    await proxy.close();
    t.close();
  }
});

test('each direction has its own rate', async () => {
  // 512 KB down at 4 Mbit/s is 1.05 s; the 100 kbit/s up does not slow it.
  const t = await target(512 * 1024);
  const proxy = await startProxy(t.base, { upBitsPerSecond: 100e3, downBitsPerSecond: 4e6 });
  try {
    const start = performance.now();
    const got = await exchange(proxy, null, 512 * 1024);
    const took = performance.now() - start;
    assert.equal(got.length, 512 * 1024);
    assert.ok(took > 900 && took < 3000, `512 KB down in ${took.toFixed(0)} ms`);
  } finally {
    await proxy.close();
    t.close();
  }
});

test('a cut refuses connections until it ends', async () => {
  const t = await target();
  const proxy = await startProxy(t.base, { delayMs: 10 });
  try {
    assert.equal((await exchange(proxy, Buffer.from('ping'), 4)).toString(), 'ping');
    const cut = proxy.cut(500);
    const during = await exchange(proxy, Buffer.from('ping'), 4).catch(() => Buffer.alloc(0));
    assert.equal(during.length, 0);
    await cut;
    assert.equal((await exchange(proxy, Buffer.from('ping'), 4)).toString(), 'ping');
  } finally {
    await proxy.close();
    t.close();
  }
});
