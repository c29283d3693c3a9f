import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';

// Read as files, not through the build's precompiling plugin: this is about the catalogs' keys.
const dir = path.dirname(new URL(import.meta.url).pathname);
const read = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));

function keys(obj: unknown, prefix = ''): string[] {
  if (typeof obj !== 'object' || obj === null) return [prefix];
  return Object.entries(obj).flatMap(([k, v]) => keys(v, prefix ? `${prefix}.${k}` : k));
}

function placeholders(obj: unknown, prefix = ''): Record<string, string> {
  if (typeof obj === 'string') return { [prefix]: [...obj.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',') };
  if (typeof obj !== 'object' || obj === null) return {};
  return Object.assign({}, ...Object.entries(obj).map(([k, v]) => placeholders(v, prefix ? `${prefix}.${k}` : k)));
}

describe('i18n catalogs', () => {
  const zh = read('zh-CN.json');
  const en = read('en.json');

  it('have the same keys in zh-CN and en', () => {
    expect(keys(en).sort()).toEqual(keys(zh).sort());
  });

  it('use the same placeholders in both languages', () => {
    expect(placeholders(en)).toEqual(placeholders(zh));
  });

  it('have no empty message', () => {
    for (const [name, cat] of [['zh-CN', zh], ['en', en]] as const) {
      for (const [key, value] of Object.entries(placeholders(cat))) {
        expect(value, `${name} ${key}`).toBeTypeOf('string');
      }
      const empty = keys(cat).filter((k) => k.split('.').reduce<unknown>((o, p) => (o as Record<string, unknown>)[p], cat) === '');
      expect(empty, `${name}: empty messages`).toEqual([]);
    }
  });

  it('every message key the code names exists', () => {
    const src = path.resolve(dir, '..');
    const files = fs.readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ts|vue)$/.test(f) && !f.endsWith('.test.ts'));
    const known = new Set(keys(zh));
    const missing: string[] = [];
    for (const f of files) {
      const text = fs.readFileSync(path.join(src, f), 'utf8');
      for (const m of text.matchAll(/\bt\('([a-zA-Z]+(?:\.[a-zA-Z]+)+)'/g)) {
        if (!known.has(m[1]!)) missing.push(`${f}: ${m[1]}`);
      }
      for (const m of text.matchAll(/'((?:errors|nav|screens|auth)\.[a-zA-Z.]+)'/g)) {
        if (!known.has(m[1]!)) missing.push(`${f}: ${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
