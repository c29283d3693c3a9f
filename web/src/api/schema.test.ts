import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// schema.d.ts is generated from docs/openapi.yaml (npm run gen) and committed; this fails when
// the API description changed and the types were not regenerated.
describe('generated API types', () => {
  it('match docs/openapi.yaml', () => {
    const web = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sanping-schema-'));
    try {
      const out = path.join(tmp, 'schema.d.ts');
      execFileSync(process.execPath, [path.join(web, 'node_modules/openapi-typescript/bin/cli.js'), '../docs/openapi.yaml', '-o', out], {
        cwd: web,
        stdio: 'pipe',
      });
      const fresh = fs.readFileSync(out, 'utf8');
      const committed = fs.readFileSync(path.join(web, 'src/api/schema.d.ts'), 'utf8');
      expect(committed === fresh, 'src/api/schema.d.ts is out of date with docs/openapi.yaml: run `npm run gen` in web/ and commit it').toBe(true);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});
