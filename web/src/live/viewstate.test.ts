import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { applyOp, cloneViewState, defaultViewState } from './viewstate';
import type { OpApplied, ViewState } from './protocol';

// The sessions a real room recorded (server/room TestViewStateFixture -update); the Go
// participant replays the same file (client/live TestViewStateFixture).
interface Recorded {
  name: string;
  applied: OpApplied[];
  state: ViewState;
}
const fixture: Recorded[] = JSON.parse(
  readFileSync(resolve(__dirname, '../../../protocol/testdata/viewstate-ops.json'), 'utf8'),
);

// The Go side leaves out empty optional fields (omitempty); compare on the JSON both make.
function normalize(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x) => (x === '' || x === undefined ? undefined : x)));
}

describe('view-state reducer on the recorded sessions', () => {
  it('has sessions to replay', () => {
    expect(fixture.length).toBeGreaterThan(0);
  });
  for (const c of fixture) {
    it(c.name, () => {
      let s = defaultViewState();
      for (const a of c.applied) {
        const before = JSON.stringify(s);
        const next = applyOp(s, a);
        expect(JSON.stringify(s)).toBe(before); // the input view is left as it was
        s = next;
      }
      expect(normalize(s)).toEqual(normalize(c.state));
    });
  }
  it('copies share nothing', () => {
    const a = defaultViewState();
    a.annotations.x = { id: 'x', kind: 'line', image: { frame: 0 }, points: [{ x: 0, y: 0 }] };
    const b = cloneViewState(a);
    b.annotations.x!.points[0]!.x = 1;
    expect(a.annotations.x!.points[0]!.x).toBe(0);
  });
});
