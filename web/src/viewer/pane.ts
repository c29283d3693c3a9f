// One viewport of the viewer: a Cornerstone stack viewport that shows a ViewState. show()
// applies only the parts that differ from what is shown (an equal state costs nothing), so a
// room that sends the same state back, or a frame change alone, is cheap. Reading back
// (canvas point to image point, the effective VOI) is here too; input handling is the
// component's.
import { utilities, type StackViewport, type Types } from '@cornerstonejs/core';
import type { ImageRef, Point, Transform, ViewState, Window } from '@/live/protocol';
import { defaultViewState } from '@/live/viewstate';
import { cachedImage, loadSeries } from './cornerstone';
import { centreOf, denormalize, indexOfImage, normalize, rangeToWindow, sameJSON, windowToRange } from './math';
import { num, nums, tag, type LoadedSeries } from './series';

export interface PaneFacts {
  study: string;
  series: string;
  instance: string;
  /** 0-based frame within the instance */
  frame: number;
  /** 0-based position in the stack */
  index: number;
  total: number;
  window: Window;
  zoom: number;
  rotation: number;
  invert: boolean;
  calibrated: boolean;
}

export class Pane {
  series: LoadedSeries | null = null;
  /** What is on screen (after show). */
  view: ViewState = defaultViewState();
  private opening: Promise<void> | null = null;
  private imageLoading = 0;

  constructor(
    readonly vp: StackViewport,
    readonly study: string,
  ) {}

  get index(): number {
    return this.vp.getCurrentImageIdIndex();
  }

  imageId(): string {
    return this.vp.getCurrentImageId() ?? '';
  }

  /** refAt: the ImageRef of a stack index. */
  refAt(i: number): ImageRef | null {
    const e = this.series?.stack[i];
    if (!e || !this.series) return null;
    return { study: this.study, series: this.series.uid, instance: e.instance, frame: e.frame };
  }

  indexOf(ref: ImageRef): number {
    return this.series ? indexOfImage(this.series.stack, { instance: ref.instance, frame: ref.frame }) : -1;
  }

  /** size: columns and rows of the image shown (or of an image ID). */
  size(imageId = this.imageId()): { columns: number; rows: number } {
    const e = this.series?.stack.find((s) => s.imageId === imageId);
    const m = e && this.series?.meta.get(e.instance);
    return { columns: num(m, tag.Columns) ?? 1, rows: num(m, tag.Rows) ?? 1 };
  }

  /** toImage: a canvas point (CSS pixels) to normalized image coordinates. */
  toImage(canvas: [number, number]): Point | null {
    const id = this.imageId();
    if (!id) return null;
    const world = this.vp.canvasToWorld(canvas as Types.Point2);
    const [x, y] = utilities.worldToImageCoords(id, world) as [number, number];
    const { columns, rows } = this.size(id);
    return normalize([x, y], columns, rows);
  }

  /** toCanvas: normalized image coordinates to a canvas point (CSS pixels). */
  toCanvas(p: Point): [number, number] | null {
    const id = this.imageId();
    if (!id) return null;
    const { columns, rows } = this.size(id);
    const world = utilities.imageToWorldCoords(id, denormalize(p, columns, rows) as Types.Point2) as Types.Point3;
    const c = this.vp.worldToCanvas(world);
    return [c[0], c[1]];
  }

  /** The VOI on screen. */
  effectiveWindow(): Window {
    const r = this.vp.getProperties().voiRange;
    return r ? rangeToWindow(r) : { center: 0, width: 0 };
  }

  /** The image's own VOI (what "as stored" shows). */
  ownWindow(): Window {
    const img = cachedImage(this.imageId());
    if (!img) return this.effectiveWindow();
    const c = Array.isArray(img.windowCenter) ? img.windowCenter[0] : img.windowCenter;
    const w = Array.isArray(img.windowWidth) ? img.windowWidth[0] : img.windowWidth;
    return { center: Number(c) || 0, width: Number(w) || 0 };
  }

  /**
   * show makes the viewport show a state. Parts equal to what is shown are left alone; the
   * viewport renders once. Resolves when the image is on screen.
   */
  async show(next: ViewState, force = false): Promise<void> {
    const prev = this.view;
    const ref = next.image;
    const seriesUID = ref.series ?? this.series?.uid;
    this.view = next;
    if (seriesUID && (!this.series || this.series.uid !== seriesUID)) {
      await this.open(seriesUID, ref);
      if (this.view !== next) return; // a newer state arrived meanwhile
      this.applyWindow(next.window, next.transform.invert);
      this.applyTransform(next.transform);
      this.vp.render();
      return;
    }
    if (!this.series) return;
    const imageChanged = force || !sameJSON(prev.image, next.image);
    const photometric = this.photometric();
    let windowChanged = force || !sameJSON(prev.window, next.window) || prev.transform.invert !== next.transform.invert;
    const transformChanged = force || !sameJSON(prev.transform, next.transform);
    if (imageChanged) {
      const i = this.indexOf(ref);
      if (i >= 0 && i !== this.index) {
        this.imageLoading++;
        try {
          await this.vp.setImageIdIndex(i);
        } finally {
          this.imageLoading--;
        }
        if (this.view !== next) return;
        // A set window stays with the viewport from image to image; the image's own window
        // and the invert of a MONOCHROME1 image are the new image's.
        if (next.window.width === 0 || this.photometric() !== photometric) windowChanged = true;
      }
    }
    if (windowChanged) this.applyWindow(next.window, next.transform.invert);
    if (transformChanged) this.applyTransform(next.transform);
    if (windowChanged || transformChanged) this.vp.render();
  }

  /** showIndex: cine and local scrolling move the stack without a new state. */
  async showIndex(i: number): Promise<void> {
    if (!this.series || i < 0 || i >= this.series.stack.length) return;
    await this.vp.setImageIdIndex(i);
    if (this.view.window.width === 0) {
      this.applyWindow(this.view.window, this.view.transform.invert);
      this.vp.render();
    }
  }

  async open(seriesUID: string, ref?: ImageRef): Promise<void> {
    const p = (async () => {
      const s = await loadSeries(this.study, seriesUID);
      this.series = s;
      let i = ref ? indexOfImage(s.stack, { instance: ref.instance, frame: ref.frame }) : -1;
      if (i < 0) i = 0;
      await this.vp.setStack(
        s.stack.map((e) => e.imageId),
        i,
      );
    })();
    this.opening = p;
    try {
      await p;
    } finally {
      if (this.opening === p) this.opening = null;
    }
  }

  private applyWindow(w: Window, invert: boolean): void {
    if (!this.imageId()) return;
    if (w.width > 0) {
      this.vp.setProperties({ voiRange: windowToRange(w) });
    } else {
      this.vp.setProperties({ voiRange: windowToRange(this.ownWindow()) });
    }
    // MONOCHROME1 shows inverted already; the protocol's invert is relative to the image as stored.
    const mono1 = this.photometric() === 'MONOCHROME1';
    this.vp.setProperties({ invert: invert !== mono1 });
  }

  private photometric(): string {
    const e = this.series?.stack[this.index];
    const m = e && this.series?.meta.get(e.instance);
    const v = m?.['00280004']?.Value?.[0];
    return typeof v === 'string' ? v : '';
  }

  applyTransform(t: Transform): void {
    const id = this.imageId();
    if (!id) return;
    this.vp.setViewPresentation({ zoom: t.zoom, rotation: t.rotation, flipHorizontal: t.flipH, flipVertical: t.flipV });
    const { columns, rows } = this.size(id);
    const world = utilities.imageToWorldCoords(id, denormalize(centreOf(t), columns, rows) as Types.Point2) as Types.Point3;
    const cam = this.vp.getCamera();
    const fp = cam.focalPoint as Types.Point3;
    const pos = cam.position as Types.Point3;
    const n = (cam.viewPlaneNormal ?? [0, 0, 1]) as Types.Point3;
    // Keep the focal point in the plane the camera looks at (the slice's own position along the normal).
    const along = (world[0] - fp[0]) * n[0] + (world[1] - fp[1]) * n[1] + (world[2] - fp[2]) * n[2];
    const focal: Types.Point3 = [world[0] - along * n[0], world[1] - along * n[1], world[2] - along * n[2]];
    const d: Types.Point3 = [pos[0] - fp[0], pos[1] - fp[1], pos[2] - fp[2]];
    this.vp.setCamera({ focalPoint: focal, position: [focal[0] + d[0], focal[1] + d[1], focal[2] + d[2]] });
  }

  /** refit: after the viewport's size changed, zoom 1 fits the new size; the transform stays. */
  refit(): void {
    if (!this.imageId()) return;
    this.vp.resetCamera();
    this.applyTransform(this.view.transform);
    this.vp.render();
  }

  /** The image point at the viewport's centre, normalized (the protocol's pan). */
  centre(): Point | null {
    const canvas = this.vp.canvas;
    return this.toImage([canvas.clientWidth / 2, canvas.clientHeight / 2]);
  }

  facts(): PaneFacts | null {
    const s = this.series;
    const e = s?.stack[this.index];
    if (!s || !e) return null;
    const m = s.meta.get(e.instance);
    return {
      study: this.study,
      series: s.uid,
      instance: e.instance,
      frame: e.frame,
      index: this.index,
      total: s.stack.length,
      window: this.effectiveWindow(),
      zoom: Math.round(this.vp.getZoom() * 1000) / 1000,
      rotation: this.view.transform.rotation,
      invert: this.view.transform.invert,
      calibrated: nums(m, tag.PixelSpacing).length === 2 || nums(m, tag.ImagerPixelSpacing).length === 2,
    };
  }

  busy(): boolean {
    return !!this.opening || this.imageLoading > 0;
  }
}
