// Annotations between the protocol (points normalized to the image) and Cornerstone (world
// coordinates on the image's plane).
import { describe, expect, it, vi } from 'vitest';
import type { Annotation } from '@/live/protocol';

// A 400 x 300 image of 0.7 mm pixels on the plane z = 12 (image x, y -> world x, y in mm).
vi.mock('@cornerstonejs/core', () => ({
  utilities: {
    imageToWorldCoords: (_id: string, p: number[]) => [(p[0] ?? 0) * 0.7 - 100, (p[1] ?? 0) * 0.7 + 50, 12],
    worldToImageCoords: (_id: string, w: number[]) => [((w[0] ?? 0) + 100) / 0.7, ((w[1] ?? 0) - 50) / 0.7],
  },
}));
const { fromProtocol, sameShape, toProtocol, valueOf, TOOL } = await import('./annotations');

const geo = { imageId: 'wadors:x/frames/1', columns: 400, rows: 300, ref: { study: '1', series: '1.1', instance: '1.1.5', frame: 0 } };
const frame = { FrameOfReferenceUID: '1.9', viewPlaneNormal: [0, 0, -1] as [number, number, number], viewUp: [0, -1, 0] as [number, number, number] };
const ann = (kind: string, points: { x: number; y: number }[], extra: Partial<Annotation> = {}): Annotation => ({ id: 'doc-1-1', kind, image: { ...geo.ref }, points, ...extra });

describe('annotations', () => {
  it('keep their ID and image, and land on the same image point', () => {
    const a = ann('length', [
      { x: 0.25, y: 0.5 },
      { x: 0.75, y: 0.5 },
    ]);
    const cs = fromProtocol(a, geo, frame, false);
    expect(cs?.annotationUID).toBe('doc-1-1');
    expect(cs?.metadata).toMatchObject({ toolName: TOOL.length, referencedImageId: geo.imageId, FrameOfReferenceUID: '1.9' });
    // x = 0.25 of 400 columns = 100 px = 70 mm - 100.
    expect(cs?.data.handles.points[0]).toEqual([-30, 155, 12]);
    const back = toProtocol(cs!, 'doc-1-1', geo);
    expect(back).toEqual({ id: 'doc-1-1', kind: 'length', image: geo.ref, points: a.points });
  });

  it('map each kind to its tool and back (a line is drawn by the length tool and stays a line)', () => {
    for (const [kind, tool, n] of [
      ['length', TOOL.length, 2],
      ['line', TOOL.length, 2],
      ['angle', TOOL.angle, 3],
      ['arrow', TOOL.arrow, 2],
      ['text', TOOL.text, 1],
    ] as const) {
      const pts = Array.from({ length: n }, (_, i) => ({ x: 0.1 * (i + 1), y: 0.2 }));
      const cs = fromProtocol(ann(kind, pts, { text: kind === 'arrow' || kind === 'text' ? '结节' : undefined }), geo, frame, false);
      expect(cs?.metadata.toolName).toBe(tool);
      const back = toProtocol(cs!, 'x', geo, kind === 'line' ? 'line' : undefined);
      expect(back?.kind).toBe(kind);
      expect(sameShape(back!, ann(kind, pts, { id: 'x', text: back?.text }))).toBe(true);
      if (kind === 'arrow' || kind === 'text') expect(back?.text).toBe('结节');
    }
  });

  it('keep an ellipse as its bounding box', () => {
    const box = [
      { x: 0.2, y: 0.3 },
      { x: 0.6, y: 0.5 },
    ];
    const cs = fromProtocol(ann('ellipse', box), geo, frame, true);
    expect(cs?.isLocked).toBe(true);
    expect(cs?.data.handles.points).toHaveLength(4);
    expect(toProtocol(cs!, 'e', geo)?.points).toEqual(box);
  });

  it('leave kinds without a tool alone', () => {
    expect(fromProtocol(ann('polyline', [{ x: 0, y: 0 }]), geo, frame, false)).toBeNull();
  });

  it('say the measurement from Cornerstone’s stats', () => {
    const base = { metadata: { toolName: TOOL.length }, data: { handles: { points: [] } } };
    expect(valueOf({ ...base, data: { ...base.data, cachedStats: { 'imageId:x': { length: 23.456, unit: 'mm' } } } })).toBe('23.5 mm');
    expect(valueOf({ ...base, data: { ...base.data, cachedStats: { t: { length: 120, unit: 'px' } } } })).toBe('120.0 px');
    expect(valueOf({ metadata: { toolName: TOOL.angle }, data: { handles: { points: [] }, cachedStats: { t: { angle: 42 } } } })).toBe('42.0°');
    expect(
      valueOf({ metadata: { toolName: TOOL.ellipse }, data: { handles: { points: [] }, cachedStats: { t: { mean: 40.24, stdDev: 11.81, area: 120.5, areaUnit: 'mm²', modalityUnit: 'HU' } } } }),
    ).toBe('40.2 ± 11.8 HU · 120.5 mm²');
    expect(valueOf({ ...base, data: { ...base.data, cachedStats: {} } })).toBeUndefined();
  });

  it('compare by what a user changes, not by the measurement text', () => {
    const a = ann('length', [
      { x: 0.1, y: 0.1 },
      { x: 0.2, y: 0.2 },
    ]);
    expect(sameShape(a, { ...a, value: '12.0 mm', author: 'p2' })).toBe(true);
    expect(sameShape(a, { ...a, points: [a.points[0]!, { x: 0.2, y: 0.21 }] })).toBe(false);
    expect(sameShape(a, { ...a, image: { ...a.image, frame: 1 } })).toBe(false);
  });
});
