// The viewer's pure parts: window presets, the stack of a series (instances and frames),
// prefetch order, normalized image coordinates, and the transform arithmetic that turns
// user input into a protocol Transform. No Cornerstone here, so all of it is unit-tested.
import type { ImageRef, Point, Transform, Window } from '@/live/protocol';

/** A window preset: CT presets in HU; "asStored" is the image's own VOI (width 0). */
export interface Preset {
  id: string;
  /** i18n key under viewer.preset */
  key: string;
  window: Window;
  /** Modalities the preset is offered for. */
  modalities: string[];
}

export const PRESETS: Preset[] = [
  { id: 'asStored', key: 'asStored', window: { center: 0, width: 0 }, modalities: ['*'] },
  { id: 'lung', key: 'lung', window: { center: -600, width: 1500 }, modalities: ['CT'] },
  { id: 'mediastinum', key: 'mediastinum', window: { center: 40, width: 400 }, modalities: ['CT'] },
  { id: 'bone', key: 'bone', window: { center: 300, width: 1500 }, modalities: ['CT'] },
  { id: 'brain', key: 'brain', window: { center: 40, width: 80 }, modalities: ['CT'] },
  { id: 'abdomen', key: 'abdomen', window: { center: 60, width: 400 }, modalities: ['CT'] },
];

export function presetsFor(modality: string): Preset[] {
  return PRESETS.filter((p) => p.modalities.includes('*') || p.modalities.includes(modality));
}

/** One entry of a series' stack: a frame of an instance (0-based frame). */
export interface StackEntry {
  imageId: string;
  instance: string;
  frame: number;
}

/** The instances of a series as the stack needs them. */
export interface InstanceEntry {
  uid: string;
  number: number;
  frames: number;
  /** Position along the slice normal (mm), when the instance has a plane; for sorting. */
  position?: number;
}

/**
 * sortInstances orders a series as a radiologist scrolls it: by Instance Number, then by
 * position along the normal, then by UID so that every screen agrees on the order.
 */
export function sortInstances(list: InstanceEntry[]): InstanceEntry[] {
  return [...list].sort((a, b) => a.number - b.number || (a.position ?? 0) - (b.position ?? 0) || (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
}

/** stackOf lists every frame of every instance, in order. */
export function stackOf(instances: InstanceEntry[], imageId: (uid: string, frame1: number) => string): StackEntry[] {
  const out: StackEntry[] = [];
  for (const i of instances) {
    for (let f = 0; f < Math.max(1, i.frames); f++) out.push({ imageId: imageId(i.uid, f + 1), instance: i.uid, frame: f });
  }
  return out;
}

/** indexOfImage finds the stack position of an ImageRef, or -1. */
export function indexOfImage(stack: StackEntry[], ref: Pick<ImageRef, 'instance' | 'frame'>): number {
  if (!ref.instance) return -1;
  return stack.findIndex((e) => e.instance === ref.instance && e.frame === (ref.frame ?? 0));
}

/** prefetchOrder: every index of a stack of n, nearest to `from` first, the next one before the previous. */
export function prefetchOrder(n: number, from: number): number[] {
  const out: number[] = [];
  if (n <= 0) return out;
  const c = Math.min(n - 1, Math.max(0, from));
  out.push(c);
  for (let d = 1; out.length < n; d++) {
    if (c + d < n) out.push(c + d);
    if (c - d >= 0) out.push(c - d);
  }
  return out;
}

export const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

/** normalize turns image coordinates (pixels, x = column, y = row; corners at 0 and size) into 0..1. */
export function normalize(p: readonly number[], columns: number, rows: number): Point {
  return { x: round6((p[0] ?? 0) / columns), y: round6((p[1] ?? 0) / rows) };
}

/** denormalize is normalize's inverse. */
export function denormalize(p: Point, columns: number, rows: number): [number, number] {
  return [p.x * columns, p.y * rows];
}

/** Six decimals: a 1/1,000,000 of an image, well below a pixel, and short on the wire. */
export const round6 = (v: number): number => Math.round(v * 1e6) / 1e6;

/**
 * ellipseBox: the protocol's ellipse is its bounding box in image coordinates, two corners
 * (top left, bottom right). Cornerstone's elliptical ROI keeps four handles: bottom, top,
 * left, right. Rotations are multiples of 90 degrees, so the axes stay the image's.
 */
export function ellipseBox(handles: Point[]): Point[] {
  const xs = handles.map((p) => p.x);
  const ys = handles.map((p) => p.y);
  return [
    { x: Math.min(...xs), y: Math.min(...ys) },
    { x: Math.max(...xs), y: Math.max(...ys) },
  ];
}

/** ellipseHandles is ellipseBox's inverse: bottom, top, left, right. */
export function ellipseHandles(box: Point[]): Point[] {
  const a = box[0] ?? { x: 0, y: 0 };
  const b = box[1] ?? a;
  const cx = (a.x + b.x) / 2;
  const cy = (a.y + b.y) / 2;
  return [
    { x: cx, y: Math.max(a.y, b.y) },
    { x: cx, y: Math.min(a.y, b.y) },
    { x: Math.min(a.x, b.x), y: cy },
    { x: Math.max(a.x, b.x), y: cy },
  ];
}

/** Zoom limits of the protocol (docs/protocol.md). */
export const ZOOM_MIN = 0.05;
export const ZOOM_MAX = 50;

export function zoomBy(t: Transform, factor: number): Transform {
  return { ...t, zoom: round6(clamp(t.zoom * factor, ZOOM_MIN, ZOOM_MAX)) };
}

/** rotate90 turns the image a quarter clockwise (as the user sees it). */
export function rotate90(t: Transform): Transform {
  return { ...t, rotation: (t.rotation + 90) % 360 };
}

export function flip(t: Transform, axis: 'h' | 'v'): Transform {
  return axis === 'h' ? { ...t, flipH: !t.flipH } : { ...t, flipV: !t.flipV };
}

/**
 * The pan of the protocol: the image point at the viewport's centre is (0.5 - panX, 0.5 - panY)
 * in normalized image coordinates. It does not depend on the screen's size or aspect, so every
 * screen centres the same point.
 */
export function centreOf(t: Pick<Transform, 'panX' | 'panY'>): Point {
  return { x: 0.5 - t.panX, y: 0.5 - t.panY };
}

export function panFor(centre: Point): { panX: number; panY: number } {
  return { panX: round6(0.5 - centre.x), panY: round6(0.5 - centre.y) };
}

/**
 * windowDrag: a drag of dx, dy CSS pixels changes width (right wider) and centre (down
 * brighter... as most viewers: down raises the centre). The step scales with the current
 * width so a narrow brain window and a wide lung window both move at a usable speed.
 */
export function windowDrag(w: Window, dx: number, dy: number, base: Window): Window {
  const scale = Math.max(1, (w.width || base.width || 400) / 256);
  const width = Math.max(1, (w.width || base.width) + dx * scale);
  const center = (w.width ? w.center : base.center) + dy * scale;
  return { center: round2(center), width: round2(width) };
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

/** cineRate: the frame rate a multi-frame image asks for (PS3.3 C.7.6.5), else 25. */
export function cineRate(m: { cineRate?: number; frameTime?: number; recommendedRate?: number }): number {
  if (m.cineRate && m.cineRate > 0) return m.cineRate;
  if (m.frameTime && m.frameTime > 0) return Math.round((1000 / m.frameTime) * 100) / 100;
  if (m.recommendedRate && m.recommendedRate > 0) return m.recommendedRate;
  return 25;
}

/** windowToRange and rangeToWindow: the linear VOI of PS3.3 C.11.2.1.2.1 as Cornerstone keeps it (lower, upper). */
export function windowToRange(w: Window): { lower: number; upper: number } {
  return { lower: w.center - w.width / 2, upper: w.center + w.width / 2 };
}

export function rangeToWindow(r: { lower: number; upper: number }): Window {
  return { center: round2((r.lower + r.upper) / 2), width: round2(r.upper - r.lower) };
}

/** sameJSON compares two plain values (state parts) structurally. */
export function sameJSON(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** ageText: the patient's age at the study date (PS3.5 AS style: 056Y), or the stored Patient's Age. */
export function ageAt(birth: string, studyDate: string): number | undefined {
  if (!/^\d{8}$/.test(birth) || !/^\d{8}$/.test(studyDate)) return undefined;
  const by = Number(birth.slice(0, 4));
  const sy = Number(studyDate.slice(0, 4));
  let age = sy - by;
  if (studyDate.slice(4) < birth.slice(4)) age--;
  return age >= 0 ? age : undefined;
}
