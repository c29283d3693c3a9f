import { describe, expect, it } from 'vitest';
import { safeNext } from './next';

describe('safeNext', () => {
  it.each([
    ['/clinic/upload', '/clinic/upload'],
    ['/doctor/worklist?state=live', '/doctor/worklist?state=live'],
    ['//evil.example/x', null],
    ['/\\evil.example', null],
    ['https://evil.example/', null],
    [undefined, null],
    [['/a'], null],
  ])('%s -> %s', (next, want) => {
    expect(safeNext(next)).toBe(want);
  });
});
