// The seam between the diagnostic viewer (web/src/viewer/) and what hosts it (the doctor's
// consultation page, the live room). The viewer shows a ViewState (docs/protocol.md) and
// reports every change its user makes as a protocol Op; it never talks to the room itself.
import type { Op, ViewState } from '@/live/protocol';

/**
 * Props of DicomViewer.vue (lazily loaded: `defineAsyncComponent(() => import('@/viewer/DicomViewer.vue'))`).
 *
 * - Without `state` the viewer keeps its own view (applyOp from @/live/viewstate on its own ops).
 * - With `state` it is controlled: it shows exactly that state (image, window, transform, cine,
 *   pointer, annotations) and draws the same pixels every other screen draws from it; a user
 *   change is shown at once and emitted as `op`; the host applies it and passes the new state
 *   back (a state equal to what is shown costs nothing).
 */
export interface DicomViewerProps {
  /** Study Instance UID to load from /dicom-web. */
  study: string;
  /** The view to show (controlled), or undefined (the viewer keeps its own). */
  state?: ViewState;
  /** No view-changing input (window, scroll, zoom, ...): a follower who is not the driver. Pointer and annotations stay allowed. */
  readonly?: boolean;
  /** The room's sequence number last applied (data-seq); undefined outside a room. */
  seq?: number;
  /** This participant's ID: annotations by others are drawn but not editable unless `driver`. */
  me?: string;
  /** This participant drives (may edit anyone's annotations). */
  driver?: boolean;
  /** Display names by participant ID, for others' laser pointers (the ID is shown without one). */
  names?: Record<string, string>;
}

/** Events: `op` with a protocol Op (sent = Date.now()), for every change the user makes. */
export type DicomViewerEmits = (e: 'op', op: Op) => void;
