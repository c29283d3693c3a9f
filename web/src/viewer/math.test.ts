import { describe, expect, it } from 'vitest';
import {
  ageAt,
  centreOf,
  cineRate,
  denormalize,
  ellipseBox,
  ellipseHandles,
  flip,
  indexOfImage,
  normalize,
  panFor,
  prefetchOrder,
  PRESETS,
  presetsFor,
  rangeToWindow,
  rotate90,
  sortInstances,
  stackOf,
  windowDrag,
  windowToRange,
  zoomBy,
} from './math';
import { defaultViewState } from '@/live/viewstate';

describe('presets', () => {
  it('has the issue’s CT windows and the image’s own for everything', () => {
    const w = Object.fromEntries(PRESETS.map((p) => [p.id, p.window]));
    expect(w).toEqual({
      asStored: { center: 0, width: 0 },
      lung: { center: -600, width: 1500 },
      mediastinum: { center: 40, width: 400 },
      bone: { center: 300, width: 1500 },
      brain: { center: 40, width: 80 },
      abdomen: { center: 60, width: 400 },
    });
  });
  it('offers CT windows for CT only', () => {
    expect(presetsFor('CT').map((p) => p.id)).toEqual(['asStored', 'lung', 'mediastinum', 'bone', 'brain', 'abdomen']);
    expect(presetsFor('DX').map((p) => p.id)).toEqual(['asStored']);
    expect(presetsFor('CR').map((p) => p.id)).toEqual(['asStored']);
  });
});

describe('prefetchOrder', () => {
  it('goes out from the shown image, the next before the previous', () => {
    expect(prefetchOrder(7, 3)).toEqual([3, 4, 2, 5, 1, 6, 0]);
  });
  it('covers every index once from either end', () => {
    for (const from of [0, 9, 4]) {
      const o = prefetchOrder(10, from);
      expect(o[0]).toBe(from);
      expect([...o].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    }
  });
  it('clamps a position outside the stack and handles an empty one', () => {
    expect(prefetchOrder(3, 10)).toEqual([2, 1, 0]);
    expect(prefetchOrder(0, 0)).toEqual([]);
  });
});

describe('stack', () => {
  const list = sortInstances([
    { uid: '1.3', number: 3, frames: 1 },
    { uid: '1.10', number: 1, frames: 1, position: 5 },
    { uid: '1.2', number: 1, frames: 1, position: -5 },
    { uid: '1.9', number: 2, frames: 3 },
  ]);
  it('sorts by instance number, then position, then UID', () => {
    expect(list.map((i) => i.uid)).toEqual(['1.2', '1.10', '1.9', '1.3']);
  });
  it('lists every frame of a multi-frame instance, 0-based', () => {
    const s = stackOf(list, (uid, f) => `wadors:${uid}/frames/${f}`);
    expect(s.map((e) => `${e.instance}:${e.frame}`)).toEqual(['1.2:0', '1.10:0', '1.9:0', '1.9:1', '1.9:2', '1.3:0']);
    expect(s[3]?.imageId).toBe('wadors:1.9/frames/2');
    expect(indexOfImage(s, { instance: '1.9', frame: 2 })).toBe(4);
    expect(indexOfImage(s, { instance: '1.9', frame: 7 })).toBe(-1);
    expect(indexOfImage(s, { frame: 0 })).toBe(-1);
  });
});

describe('normalized image coordinates', () => {
  it('divide by columns and rows (corners at 0 and 1)', () => {
    expect(normalize([256, 128], 512, 256)).toEqual({ x: 0.5, y: 0.5 });
    expect(normalize([0, 256], 512, 256)).toEqual({ x: 0, y: 1 });
    expect(denormalize({ x: 0.25, y: 0.75 }, 512, 400)).toEqual([128, 300]);
  });
  it('round trip within a millionth', () => {
    const p = normalize([123.456789, 77.7], 333, 222);
    const [x, y] = denormalize(p, 333, 222);
    expect(Math.abs(x - 123.456789)).toBeLessThan(333e-6);
    expect(Math.abs(y - 77.7)).toBeLessThan(222e-6);
  });
  it('an ellipse is its bounding box, and back', () => {
    const handles = [
      { x: 0.5, y: 0.7 },
      { x: 0.5, y: 0.3 },
      { x: 0.2, y: 0.5 },
      { x: 0.8, y: 0.5 },
    ];
    const box = ellipseBox(handles);
    expect(box).toEqual([
      { x: 0.2, y: 0.3 },
      { x: 0.8, y: 0.7 },
    ]);
    expect(ellipseHandles(box)).toEqual(handles);
  });
});

describe('transform', () => {
  const t = defaultViewState().transform;
  it('pan names the image point at the viewport centre', () => {
    expect(centreOf(t)).toEqual({ x: 0.5, y: 0.5 });
    expect(panFor({ x: 0.25, y: 0.6 })).toEqual({ panX: 0.25, panY: -0.1 });
    expect(centreOf(panFor({ x: 0.3, y: 0.8 }))).toEqual({ x: 0.3, y: 0.8 });
  });
  it('zoom stays within the protocol’s limits', () => {
    expect(zoomBy(t, 2).zoom).toBe(2);
    expect(zoomBy({ ...t, zoom: 40 }, 2).zoom).toBe(50);
    expect(zoomBy({ ...t, zoom: 0.06 }, 0.5).zoom).toBe(0.05);
  });
  it('rotates in quarter turns and flips each axis', () => {
    let r = t;
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push((r = rotate90(r)).rotation);
    expect(seen).toEqual([90, 180, 270, 0]);
    expect(flip(t, 'h')).toMatchObject({ flipH: true, flipV: false });
    expect(flip(flip(t, 'v'), 'v')).toEqual(t);
  });
});

describe('window', () => {
  it('converts to Cornerstone’s range and back', () => {
    expect(windowToRange({ center: 40, width: 400 })).toEqual({ lower: -160, upper: 240 });
    expect(rangeToWindow({ lower: -1350, upper: 150 })).toEqual({ center: -600, width: 1500 });
  });
  it('a drag right widens, down raises the level, from the image’s own window when none is set', () => {
    const own = { center: 40, width: 400 };
    const w = windowDrag({ center: 0, width: 0 }, 10, 5, own);
    expect(w.width).toBeGreaterThan(400);
    expect(w.center).toBeGreaterThan(40);
    expect(windowDrag({ center: 0, width: 10 }, -1000, 0, own).width).toBe(1);
  });
});

describe('cine rate (PS3.3 C.7.6.5)', () => {
  it('prefers Cine Rate, then Frame Time, then Recommended Display Frame Rate, else 25', () => {
    expect(cineRate({ cineRate: 30, frameTime: 40 })).toBe(30);
    expect(cineRate({ frameTime: 33.33 })).toBe(30);
    expect(cineRate({ recommendedRate: 15 })).toBe(15);
    expect(cineRate({})).toBe(25);
  });
});

describe('ageAt', () => {
  it('counts whole years at the study date', () => {
    expect(ageAt('19610305', '20261201')).toBe(65);
    expect(ageAt('19611205', '20261201')).toBe(64);
    expect(ageAt('', '20261201')).toBeUndefined();
  });
});
