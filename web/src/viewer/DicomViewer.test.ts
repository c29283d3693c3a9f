// DicomViewer's contract (contract.ts) with Cornerstone stood in: the ops it emits, what a
// controlled state costs, and annotations from the state applied without an echo.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import type { Op, ViewState } from '@/live/protocol';
import { cloneViewState, defaultViewState } from '@/live/viewstate';
import { i18n } from '@/i18n';
import type { DicomJSON } from './series';

vi.mock('@cornerstonejs/core', () => ({
  utilities: {
    imageToWorldCoords: (_id: string, p: number[]) => [(p[0] ?? 0) * 0.5, (p[1] ?? 0) * 0.5, 0],
    worldToImageCoords: (_id: string, w: number[]) => [(w[0] ?? 0) / 0.5, (w[1] ?? 0) / 0.5],
  },
}));

const STUDY = '1.2';
const SERIES = '1.2.1';
const inst = (n: number): DicomJSON => ({
  '00080018': { vr: 'UI', Value: [`${SERIES}.${n}`] },
  '00080060': { vr: 'CS', Value: ['CT'] },
  '00200013': { vr: 'IS', Value: [n] },
  '00280010': { vr: 'US', Value: [512] },
  '00280011': { vr: 'US', Value: [512] },
  '00280030': { vr: 'DS', Value: [0.5, 0.5] },
});

const h = vi.hoisted(() => ({ calls: [] as string[], annotations: new Map<string, unknown>(), events: new EventTarget() }));

vi.mock('./cornerstone', async () => {
  const { buildSeries } = await import('./series');
  const series = buildSeries('1.2', '1.2.1', [1, 2, 3, 4, 5].map(inst));
  class Stage {
    id = 'engine-1';
    addViewport(_id: string, element: HTMLElement) {
      let index = 0;
      let ids: string[] = [];
      let voi = { lower: -160, upper: 240 };
      let camera = { focalPoint: [128, 128, 0], position: [128, 128, 100], viewPlaneNormal: [0, 0, -1], viewUp: [0, -1, 0] };
      const rendered = () => queueMicrotask(() => element.dispatchEvent(new Event('CORNERSTONE_IMAGE_RENDERED')));
      return {
        canvas: { clientWidth: 512, clientHeight: 512 },
        getCurrentImageIdIndex: () => index,
        getCurrentImageId: () => ids[index],
        setStack: async (list: string[], i: number) => {
          h.calls.push(`setStack ${i}`);
          ids = list;
          index = i;
          rendered();
        },
        setImageIdIndex: async (i: number) => {
          h.calls.push(`setImageIdIndex ${i}`);
          index = i;
          rendered();
        },
        setProperties: (p: { voiRange?: typeof voi }) => {
          h.calls.push('setProperties');
          if (p.voiRange) voi = p.voiRange;
        },
        getProperties: () => ({ voiRange: voi }),
        setViewPresentation: () => h.calls.push('setViewPresentation'),
        getCamera: () => camera,
        setCamera: (c: typeof camera) => {
          camera = { ...camera, ...c };
        },
        render: () => {
          h.calls.push('render');
          rendered();
        },
        getZoom: () => 1,
        getFrameOfReferenceUID: () => '1.2.9',
        resetCamera: () => h.calls.push('resetCamera'),
        canvasToWorld: (p: number[]) => [(p[0] ?? 0) / 2, (p[1] ?? 0) / 2, 0],
        worldToCanvas: (w: number[]) => [(w[0] ?? 0) * 2, (w[1] ?? 0) * 2],
      };
    }
    resize() {}
    destroy() {}
  }
  class Prefetch {
    constructor(stack: string[], progress: (l: number, t: number) => void) {
      progress(stack.length, stack.length);
    }
    restart() {}
    stop() {}
  }
  return {
    initCornerstone: async () => undefined,
    loadSeries: async () => series,
    cachedImage: () => ({ windowCenter: 40, windowWidth: 400 }),
    Stage,
    Prefetch,
    eventTarget: h.events,
    Enums: { Events: { IMAGE_RENDERED: 'CORNERSTONE_IMAGE_RENDERED' } },
  };
});

vi.mock('./tools', () => ({
  initTools: () => undefined,
  ToolSet: class {
    use() {}
    destroy() {}
  },
  csAnnotation: {
    state: {
      getAnnotation: (id: string) => h.annotations.get(id),
      addAnnotation: (a: { annotationUID: string }) => {
        h.calls.push(`addAnnotation ${a.annotationUID}`);
        h.annotations.set(a.annotationUID, a);
      },
      removeAnnotation: (id: string) => {
        h.calls.push(`removeAnnotation ${id}`);
        h.annotations.delete(id);
      },
    },
    locking: { setAnnotationLocked: () => undefined },
    selection: { getAnnotationsSelected: () => [] },
  },
}));

vi.mock('./series', async (importOriginal) => ({
  ...(await importOriginal<typeof import('./series')>()),
  seriesOfStudy: async () => [{ uid: SERIES, modality: 'CT', description: '胸部', number: 1, instances: 5 }],
}));

const DicomViewer = (await import('./DicomViewer.vue')).default;

let w: VueWrapper;
const ops = (): Op[] => (w.emitted('op') ?? []).map((e) => e[0] as Op);
const frame = () => new Promise((r) => requestAnimationFrame(() => r(undefined)));
const settle = async () => {
  for (let i = 0; i < 4; i++) {
    await flushPromises();
    await frame();
  }
};
const state = (n: number, extra: Partial<ViewState> = {}): ViewState => ({
  ...defaultViewState(),
  image: { study: STUDY, series: SERIES, instance: `${SERIES}.${n}`, frame: 0 },
  ...extra,
});

beforeEach(() => {
  h.calls.length = 0;
  h.annotations.clear();
});
afterEach(() => w?.unmount());

describe('DicomViewer, its own state', () => {
  it('shows the first image and names it in data attributes', async () => {
    w = mount(DicomViewer, { props: { study: STUDY }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    const el = w.element as HTMLElement;
    expect(el.dataset).toMatchObject({ study: STUDY, series: SERIES, instance: `${SERIES}.1`, frame: '1', index: '1', total: '5', loaded: '5', windowCenter: '40', windowWidth: '400', zoom: '1', rotation: '0', invert: 'false' });
    expect(el.dataset.seq).toBeUndefined();
    expect(ops()).toEqual([]);
  });

  it('emits an image op per scroll step and a transform op per rotation', async () => {
    w = mount(DicomViewer, { props: { study: STUDY }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    await w.trigger('keydown', { key: 'ArrowDown' });
    await settle();
    await w.trigger('keydown', { key: 'r' });
    await settle();
    const [a, b] = ops();
    expect(a).toMatchObject({ kind: 'image', image: { study: STUDY, series: SERIES, instance: `${SERIES}.2`, frame: 0 } });
    expect(typeof a?.sent).toBe('number');
    expect(b).toMatchObject({ kind: 'transform', transform: { rotation: 90, zoom: 1 } });
    expect((w.element as HTMLElement).dataset).toMatchObject({ instance: `${SERIES}.2`, rotation: '90' });
  });

  it('coalesces a window drag to one op per animation frame', async () => {
    w = mount(DicomViewer, { props: { study: STUDY }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    const vp = w.find('.pane[data-pane="0"] .vp');
    await vp.trigger('pointerdown', { button: 0, clientX: 100, clientY: 100, pointerType: 'mouse' });
    for (let i = 1; i <= 5; i++) await vp.trigger('pointermove', { clientX: 100 + i * 10, clientY: 100, pointerType: 'mouse' });
    await vp.trigger('pointerup', { pointerType: 'mouse' });
    await settle();
    const windows = ops().filter((o) => o.kind === 'window');
    expect(windows).toHaveLength(1);
    expect(windows[0]?.window?.width).toBeGreaterThan(400);
  });
});

describe('DicomViewer, controlled', () => {
  it('shows the host’s state; an equal state costs no Cornerstone call and no op', async () => {
    const s = state(3, { window: { center: -600, width: 1500 } });
    w = mount(DicomViewer, { props: { study: STUDY, state: s, seq: 7, me: 'p1' }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    const el = w.element as HTMLElement;
    expect(el.dataset).toMatchObject({ instance: `${SERIES}.3`, windowCenter: '-600', windowWidth: '1500', seq: '7' });
    h.calls.length = 0;
    await w.setProps({ state: cloneViewState(s), seq: 8 });
    await settle();
    expect(h.calls).toEqual([]);
    expect(ops()).toEqual([]);
    expect(el.dataset.seq).toBe('8');
  });

  it('a follower (readonly) cannot scroll or window', async () => {
    w = mount(DicomViewer, { props: { study: STUDY, state: state(2), readonly: true, me: 'p2' }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    await w.trigger('keydown', { key: 'ArrowDown' });
    await w.trigger('keydown', { key: '2' });
    await settle();
    expect(ops()).toEqual([]);
    expect((w.element as HTMLElement).dataset.instance).toBe(`${SERIES}.2`);
  });

  it('draws annotations from the state with their IDs and never echoes them', async () => {
    const a = { id: 'p2-1-1700000000000', kind: 'length', image: { study: STUDY, series: SERIES, instance: `${SERIES}.2`, frame: 0 }, points: [{ x: 0.25, y: 0.5 }, { x: 0.75, y: 0.5 }], value: '128.0 mm', author: 'p2' };
    w = mount(DicomViewer, { props: { study: STUDY, state: state(2), me: 'p1' }, global: { plugins: [i18n] }, attachTo: document.body });
    await settle();
    await settle();
    await w.setProps({ state: { ...state(2), annotations: { [a.id]: a } } });
    await settle();
    expect(h.calls).toContain(`addAnnotation ${a.id}`);
    // Cornerstone reports the annotation it was given, as added and modified: not the user's doing.
    const cs = h.annotations.get(a.id);
    h.events.dispatchEvent(Object.assign(new Event('CORNERSTONE_TOOLS_ANNOTATION_MODIFIED'), { detail: { annotation: cs, viewportId: 'main', renderingEngineId: 'engine-1' } }));
    await settle();
    h.calls.length = 0;
    await w.setProps({ state: { ...state(2), annotations: { [a.id]: { ...a, value: '128.1 mm' } } } });
    await settle();
    expect(h.calls).toEqual([]);
    expect(ops()).toEqual([]);
    // Deleted in the state: removed here, and no delete op goes back.
    await w.setProps({ state: state(2) });
    await settle();
    expect(h.calls).toContain(`removeAnnotation ${a.id}`);
    expect(ops()).toEqual([]);
  });
});
