// Pane against a stand-in stack viewport: which Cornerstone calls a new state costs.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ViewState } from '@/live/protocol';
import { cloneViewState, defaultViewState } from '@/live/viewstate';
import { buildSeries, type DicomJSON } from './series';

// Image plane: 0.5 mm pixels, the slice at z; image (x, y) -> world (x * 0.5, y * 0.5, z).
vi.mock('@cornerstonejs/core', () => ({
  utilities: {
    imageToWorldCoords: (_id: string, p: number[]) => [(p[0] ?? 0) * 0.5, (p[1] ?? 0) * 0.5, 0],
    worldToImageCoords: (_id: string, w: number[]) => [(w[0] ?? 0) / 0.5, (w[1] ?? 0) / 0.5],
  },
}));

const instance = (uid: string, n: number): DicomJSON => ({
  '00080018': { vr: 'UI', Value: [uid] },
  '00080060': { vr: 'CS', Value: ['CT'] },
  '00200013': { vr: 'IS', Value: [n] },
  '00280010': { vr: 'US', Value: [512] },
  '00280011': { vr: 'US', Value: [512] },
  '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
  '00280030': { vr: 'DS', Value: [0.5, 0.5] },
});
const series = buildSeries('1.2', '1.2.1', [instance('1.2.1.2', 2), instance('1.2.1.1', 1), instance('1.2.1.3', 3)]);

vi.mock('./cornerstone', () => ({
  loadSeries: async () => series,
  cachedImage: () => ({ windowCenter: 40, windowWidth: 400 }),
}));

const { Pane } = await import('./pane');

function fakeViewport() {
  const calls: string[] = [];
  let index = 0;
  let ids: string[] = [];
  let voi = { lower: -160, upper: 240 };
  let camera = { focalPoint: [128, 128, 0], position: [128, 128, 100], viewPlaneNormal: [0, 0, -1], viewUp: [0, -1, 0] };
  const vp = {
    calls,
    canvas: { clientWidth: 500, clientHeight: 500 },
    getCurrentImageIdIndex: () => index,
    getCurrentImageId: () => ids[index],
    setStack: async (list: string[], i: number) => {
      calls.push(`setStack ${i}`);
      ids = list;
      index = i;
      return ids[i];
    },
    setImageIdIndex: async (i: number) => {
      calls.push(`setImageIdIndex ${i}`);
      index = i;
      return ids[i];
    },
    setProperties: (p: { voiRange?: { lower: number; upper: number }; invert?: boolean }) => {
      calls.push(`setProperties ${JSON.stringify(p)}`);
      if (p.voiRange) voi = p.voiRange;
    },
    getProperties: () => ({ voiRange: voi }),
    setViewPresentation: (p: unknown) => calls.push(`setViewPresentation ${JSON.stringify(p)}`),
    getCamera: () => camera,
    setCamera: (c: typeof camera) => {
      calls.push(`setCamera ${JSON.stringify(c.focalPoint)}`);
      camera = { ...camera, ...c };
    },
    render: () => calls.push('render'),
    getZoom: () => 1,
  };
  return vp;
}

let vp: ReturnType<typeof fakeViewport>;
let pane: InstanceType<typeof Pane>;
let shown: ViewState;

beforeEach(async () => {
  vp = fakeViewport();
  pane = new Pane(vp as never, '1.2');
  shown = { ...defaultViewState(), image: { study: '1.2', series: '1.2.1', instance: '1.2.1.2', frame: 0 }, window: { center: 40, width: 400 } };
  await pane.show(shown);
  vp.calls.length = 0;
});

describe('Pane.show', () => {
  it('opened the series at the state’s image (sorted by Instance Number)', async () => {
    const v = fakeViewport();
    const q = new Pane(v as never, '1.2');
    await q.show(shown);
    expect(v.calls[0]).toBe('setStack 1');
    expect(q.facts()).toMatchObject({ instance: '1.2.1.2', frame: 0, index: 1, total: 3, window: { center: 40, width: 400 }, calibrated: true });
  });

  it('costs nothing for an equal state', async () => {
    await pane.show(cloneViewState(shown));
    expect(vp.calls).toEqual([]);
  });

  it('changes only the image for a frame change (a set window stays)', async () => {
    await pane.show({ ...cloneViewState(shown), image: { ...shown.image, instance: '1.2.1.3' } });
    expect(vp.calls).toEqual(['setImageIdIndex 2']);
  });

  it('takes each image’s own window when the window is the default (width 0)', async () => {
    const s = { ...cloneViewState(shown), window: { center: 0, width: 0 } };
    await pane.show(s);
    vp.calls.length = 0;
    await pane.show({ ...cloneViewState(s), image: { ...shown.image, instance: '1.2.1.1' } });
    expect(vp.calls).toEqual(['setImageIdIndex 0', 'setProperties {"voiRange":{"lower":-160,"upper":240}}', 'setProperties {"invert":false}', 'render']);
  });

  it('sets the window and renders once', async () => {
    await pane.show({ ...cloneViewState(shown), window: { center: -600, width: 1500 } });
    expect(vp.calls).toEqual(['setProperties {"voiRange":{"lower":-1350,"upper":150}}', 'setProperties {"invert":false}', 'render']);
  });

  it('puts the image point named by the pan at the centre, with zoom, rotation and flips', async () => {
    const t = { zoom: 2, panX: 0.25, panY: -0.25, rotation: 90, flipH: true, flipV: false, invert: false };
    await pane.show({ ...cloneViewState(shown), transform: t });
    // Centre (0.25, 0.75) of a 512 x 512 image of 0.5 mm pixels: world (64, 192).
    expect(vp.calls).toEqual([
      'setViewPresentation {"zoom":2,"rotation":90,"flipHorizontal":true,"flipVertical":false}',
      'setCamera [64,192,0]',
      'render',
    ]);
  });

  it('follows only the newest of two states given quickly', async () => {
    const a = pane.show({ ...cloneViewState(shown), image: { ...shown.image, instance: '1.2.1.1' } });
    const b = pane.show({ ...cloneViewState(shown), image: { ...shown.image, instance: '1.2.1.3' } });
    await Promise.all([a, b]);
    expect(pane.facts()?.instance).toBe('1.2.1.3');
  });
});
