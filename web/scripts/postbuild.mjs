// After vite build: writes .br and .gz copies of the hashed assets (the Go handler serves them
// by Accept-Encoding) and prints what the sign-in page loads, gzipped, against the budget
// (bench/README.md "Browser app"). Exits 1 over budget.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const BUDGET = 250 * 1024; // bytes of JS + CSS, gzipped, for the sign-in page
const app = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/app');
const assets = path.join(app, 'assets');

const gzip = (b) => zlib.gzipSync(b, { level: 9 });
const brotli = (b) =>
  zlib.brotliCompressSync(b, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length },
  });

for (const name of fs.readdirSync(assets)) {
  if (!/\.(js|css|svg|json|wasm)$/.test(name)) continue;
  const file = path.join(assets, name);
  const raw = fs.readFileSync(file);
  if (raw.length < 1024) continue; // not worth a request header's worth of saving
  fs.writeFileSync(file + '.gz', gzip(raw));
  fs.writeFileSync(file + '.br', brotli(raw));
}

// What index.html makes the browser fetch before the sign-in form shows: the entry script,
// its module preloads and the stylesheets. (The sign-in view is in the entry chunk; every
// other screen is a lazy chunk.)
const html = fs.readFileSync(path.join(app, 'index.html'), 'utf8');
const urls = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*\shref)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
let raw = 0;
let gz = 0;
let br = 0;
const rows = [];
for (const url of urls) {
  const b = fs.readFileSync(path.join(app, url));
  const g = gzip(b).length;
  const r = brotli(b).length;
  raw += b.length;
  gz += g;
  br += r;
  rows.push(`  ${url.padEnd(40)} ${(b.length / 1024).toFixed(1).padStart(7)} KB  gzip ${(g / 1024).toFixed(1).padStart(6)} KB  br ${(r / 1024).toFixed(1).padStart(6)} KB`);
}
console.log('sign-in page, JS + CSS:');
console.log(rows.join('\n'));
console.log(`  total ${(raw / 1024).toFixed(1)} KB, gzip ${(gz / 1024).toFixed(1)} KB, br ${(br / 1024).toFixed(1)} KB (budget ${BUDGET / 1024} KB gzipped)`);
if (gz > BUDGET) {
  console.error(`over budget: the sign-in page's JS and CSS are ${(gz / 1024).toFixed(1)} KB gzipped, more than ${BUDGET / 1024} KB`);
  process.exit(1);
}
