import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('@/api/client', () => ({
  api: { POST: vi.fn(async () => ({ data: { token: 'spg_test', expiresAt: new Date(Date.now() + 600_000).toISOString() } })) },
}));

import { DEFAULT_LOCAL_BASE, LOCAL_BASE_KEY, localBase, localSource, studyOfLocalURL } from './local';
import type { SeriesSummary } from './series';

const series = (uid: string, instances: number): SeriesSummary => ({ uid, modality: 'CT', description: '', number: 1, instances });
const qido = (uid: string, n: number) => ({ '0020000E': { vr: 'UI', Value: [uid] }, '00201209': { vr: 'IS', Value: [n] } });

describe('local source', () => {
  let answers: Record<string, unknown>;
  const seen: { url: string; auth: string | null }[] = [];
  beforeEach(() => {
    localStorage.clear();
    seen.length = 0;
    answers = {};
    vi.stubGlobal('fetch', vi.fn(async (url: string, init?: RequestInit) => {
      seen.push({ url, auth: new Headers(init?.headers).get('Authorization') });
      if (!(url in answers)) throw new TypeError('Failed to fetch');
      return new Response(JSON.stringify(answers[url]), { status: 200 });
    }));
  });
  afterEach(() => vi.unstubAllGlobals());

  it('is the default address unless the clinic set another or turned it off', () => {
    expect(localBase()).toBe(DEFAULT_LOCAL_BASE);
    localStorage.setItem(LOCAL_BASE_KEY, 'http://127.0.0.1:9999/');
    expect(localBase()).toBe('http://127.0.0.1:9999');
    localStorage.setItem(LOCAL_BASE_KEY, 'off');
    expect(localBase()).toBe('');
  });

  it('is used only when the station has every series the county lists, instance for instance', async () => {
    const b = DEFAULT_LOCAL_BASE;
    answers[`${b}/dicom-web/health`] = { status: 'ok' };
    answers[`${b}/dicom-web/studies/1.2/series`] = [qido('1.2.1', 3), qido('1.2.2', 1)];
    expect(await localSource('1.2', [series('1.2.1', 3), series('1.2.2', 1)])).toBe(b);
    expect(seen.find((s) => s.url.endsWith('/series'))?.auth).toBe('Bearer spg_test');
    expect(await localSource('1.2', [series('1.2.1', 4), series('1.2.2', 1)])).toBeNull();
    expect(await localSource('1.2', [series('1.2.1', 3), series('1.2.3', 1)])).toBeNull();
  });

  it('falls back to the county when the station does not answer', async () => {
    expect(await localSource('1.2', [series('1.2.1', 3)])).toBeNull();
  });

  it('names the study of a station URL or image ID', () => {
    expect(studyOfLocalURL(`wadors:${DEFAULT_LOCAL_BASE}/dicom-web/studies/1.2.3/series/4/instances/5/frames/1`)).toBe('1.2.3');
    expect(studyOfLocalURL('wadors:http://county.example/dicom-web/studies/1.2.3/series/4')).toBeNull();
  });
});
