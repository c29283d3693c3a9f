// The real server for browser tests: bin/sanping (with the built app embedded) on a free port,
// a fresh data directory set up with the CLI as a county IT person would, and Debian's
// Chromium through playwright-core (never a downloaded browser).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
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
 * starts the server on a free port and waits for /healthz.
 */
export async function startServer(setup) {
  const bin = binary();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-web-e2e-'));
  const data = path.join(tmp, 'data');
  fs.mkdirSync(data);
  const cli = (args, stdin = '') => run(bin, [args[0], args[1], '-data', data, ...args.slice(2)], { input: stdin }).toString();
  setup(cli);
  const port = await freePort();
  const proc = spawn(bin, ['-addr', `127.0.0.1:${port}`, '-data', data, '-media-udp=', '-media-tcp=', '-turn='], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d) => {
    log += d.toString();
    if (log.length > 1_000_000) log = log.slice(-500_000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  proc.on('exit', (code, sig) => {
    exited = `exit code ${code} signal ${sig}`;
  });
  const base = `http://127.0.0.1:${port}`;
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
  return {
    base,
    log: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await done;
        clearTimeout(t);
      }
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
