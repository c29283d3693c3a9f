// Cornerstone3D behind one small seam: initialised once (core and the DICOM image loader with
// its decode workers), series metadata registered with the loader's wadors metaDataManager,
// and frames fetched from /dicom-web in the background nearest-first. The measurement tools
// are tools.ts, loaded after the first image. Components use these modules, never
// Cornerstone's globals directly.
import {
  cache,
  Enums,
  eventTarget,
  imageLoader,
  imageLoadPoolManager,
  imageRetrievalPoolManager,
  init as coreInit,
  RenderingEngine,
  type StackViewport,
  type Types,
} from '@cornerstonejs/core';
import dicomImageLoader from '@cornerstonejs/dicom-image-loader';
import { fetchSeriesMetadata, buildSeries, requestHeaders, seriesURL, type LoadedSeries, type DicomJSON } from './series';
import { prefetchOrder } from './math';

/** The in-memory image cache: a 300-slice 512x512 CT is 150 MB decoded; 1 GB holds several. */
const CACHE_BYTES = 1024 * 1024 * 1024;

let ready: Promise<void> | null = null;

/** initCornerstone runs once per page (the tools come later: see tools.ts). */
export function initCornerstone(): Promise<void> {
  ready ??= (async () => {
    coreInit();
    const cores = typeof navigator !== 'undefined' ? navigator.hardwareConcurrency || 2 : 2;
    // Frames from the clinic's station carry its grant (series.ts, local.ts); the loader passes
    // the image ID (XHR) or the URL (streaming) here.
    dicomImageLoader.init({ maxWebWorkers: Math.max(1, Math.min(4, cores - 1)), beforeSend: (_xhr, idOrUrl) => requestHeaders(idOrUrl) });
    cache.setMaxCacheSize(CACHE_BYTES);
    // Six connections per origin over HTTP/1.1: keep them busy with what the user asked for
    // first (interaction), then the prefetch.
    imageRetrievalPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Interaction, 6);
    imageRetrievalPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, 6);
    imageLoadPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Interaction, 6);
    imageLoadPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, 6);
  })();
  return ready;
}

const seriesCache = new Map<string, Promise<LoadedSeries>>();

/** loadSeries fetches a series' metadata once and registers each frame with the wadors loader. */
export function loadSeries(study: string, series: string): Promise<LoadedSeries> {
  const key = seriesURL(study, series);
  let p = seriesCache.get(key);
  if (!p) {
    p = fetchSeriesMetadata(study, series).then((list) => {
      const s = buildSeries(study, series, list);
      const registered = new Set<string>();
      for (const e of s.stack) {
        if (registered.has(e.instance)) continue;
        registered.add(e.instance);
        // Multi-frame instances: frame 1's metadata serves all frames (the loader derives them).
        dicomImageLoader.wadors.metaDataManager.add(e.imageId, s.meta.get(e.instance) as unknown as Parameters<typeof dicomImageLoader.wadors.metaDataManager.add>[1]);
      }
      return s;
    });
    p.catch(() => seriesCache.delete(key));
    seriesCache.set(key, p);
  }
  return p;
}

export function instanceMeta(s: LoadedSeries, instance: string): DicomJSON | undefined {
  return s.meta.get(instance);
}

/** isCached: the image is decoded in Cornerstone's cache. */
export function isCached(imageId: string): boolean {
  return cache.isLoaded(imageId);
}

export function cachedImage(imageId: string): Types.IImage | undefined {
  return cache.getImage(imageId);
}

/**
 * Prefetch loads a whole stack into the cache in the background, nearest to the shown image
 * first, reporting progress. restart(from) reorders what is left around a new position.
 */
export class Prefetch {
  private queue: number[] = [];
  private inFlight = 0;
  private stopped = false;
  private readonly max = 6;
  loaded = 0;

  constructor(
    private readonly stack: string[],
    private readonly progress: (loaded: number, total: number) => void,
  ) {
    this.count();
  }

  private count(): void {
    this.loaded = this.stack.filter((id) => cache.isLoaded(id)).length;
    this.progress(this.loaded, this.stack.length);
  }

  restart(from: number): void {
    this.queue = prefetchOrder(this.stack.length, from).filter((i) => !cache.isLoaded(this.stack[i] ?? ''));
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.max && this.queue.length) {
      const i = this.queue.shift() as number;
      const id = this.stack[i];
      if (!id || cache.isLoaded(id)) continue;
      this.inFlight++;
      const done = (): void => {
        this.inFlight--;
        if (this.stopped) return;
        this.count();
        this.pump();
      };
      imageLoadPoolManager.addRequest(
        () => imageLoader.loadAndCacheImage(id, { priority: 0, requestType: Enums.RequestType.Prefetch }).then(done, done),
        Enums.RequestType.Prefetch,
        { imageId: id },
        0,
      );
    }
  }

  stop(): void {
    this.stopped = true;
    this.queue = [];
  }
}

let engineCount = 0;

/** A rendering engine with one stack viewport per element. */
export class Stage {
  readonly engine: RenderingEngine;
  readonly id: string;

  constructor() {
    this.id = `sanping-viewer-${++engineCount}`;
    this.engine = new RenderingEngine(this.id);
  }

  addViewport(viewportId: string, element: HTMLDivElement): StackViewport {
    this.engine.enableElement({
      viewportId,
      element,
      type: Enums.ViewportType.STACK,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 },
    });
    return this.engine.getViewport(viewportId) as StackViewport;
  }

  resize(): void {
    this.engine.resize(true, true);
  }

  destroy(): void {
    this.engine.destroy();
  }
}

export { eventTarget, Enums };
