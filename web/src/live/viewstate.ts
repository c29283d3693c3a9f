// The browser's view-state reducer: the same rules as the room (server/room/view.go apply)
// and the Go participant (client/live ApplyOp), checked against the same recorded op
// sequences (protocol/testdata/viewstate-ops.json) by all three.
import type { Annotation, OpApplied, ViewState } from './protocol';

export function defaultViewState(): ViewState {
  return {
    image: { frame: 0 },
    window: { center: 0, width: 0 },
    transform: { zoom: 1, panX: 0, panY: 0, rotation: 0, flipH: false, flipV: false, invert: false },
    cine: { playing: false, fps: 0 },
    annotations: {},
  };
}

function cloneAnnotation(a: Annotation): Annotation {
  return { ...a, image: { ...a.image }, points: a.points.map((p) => ({ ...p })) };
}

/** cloneViewState copies a view so that the copy shares nothing with the original. */
export function cloneViewState(s: ViewState): ViewState {
  const annotations: Record<string, Annotation> = {};
  for (const [id, a] of Object.entries(s.annotations ?? {})) annotations[id] = cloneAnnotation(a);
  const out: ViewState = {
    image: { ...s.image },
    window: { ...s.window },
    transform: { ...s.transform },
    cine: { ...s.cine },
    annotations,
  };
  if (s.pointer) out.pointer = { ...s.pointer };
  return out;
}

/**
 * applyOp returns the view after an op in the room's order; the input is not changed. Each
 * kind replaces its part of the view; annotations are added, updated (keeping their author
 * and creation time) and deleted by ID; reset puts window, transform and cine back to their
 * defaults. The server has checked the op, so only missing fields are guarded against.
 */
export function applyOp(state: ViewState, a: OpApplied): ViewState {
  const s = cloneViewState(state);
  const op = a.op;
  switch (op.kind) {
    case 'image':
      if (op.image) s.image = { ...op.image };
      break;
    case 'window':
      if (op.window) s.window = { ...op.window };
      break;
    case 'transform':
      if (op.transform) s.transform = { ...op.transform };
      break;
    case 'cine':
      if (op.cine) s.cine = { ...op.cine };
      break;
    case 'pointer':
      if (op.pointer) s.pointer = { ...op.pointer, by: a.by };
      break;
    case 'annotation.add':
      if (op.annotation) {
        s.annotations[op.annotation.id] = { ...cloneAnnotation(op.annotation), author: a.by, created: a.time, updated: a.time };
      }
      break;
    case 'annotation.update': {
      const old = op.annotation && s.annotations[op.annotation.id];
      if (op.annotation && old) {
        s.annotations[op.annotation.id] = { ...cloneAnnotation(op.annotation), author: old.author, created: old.created, updated: a.time };
      }
      break;
    }
    case 'annotation.delete':
      if (op.annotationId) delete s.annotations[op.annotationId];
      break;
    case 'reset': {
      const d = defaultViewState();
      s.window = d.window;
      s.transform = d.transform;
      s.cine = d.cine;
      break;
    }
  }
  return s;
}
