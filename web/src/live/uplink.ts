// The uplink policy of a publisher with an imaging feed (issue 16): when the browser's own
// estimate of its uplink cannot carry everything, the imaging feed (ultrasound, a screen)
// keeps its rate and the face camera gives way: all its layers, then its lower layers only,
// then no video at all (its microphone goes on). Pure logic: the room store samples getStats
// of the "pub" connection and the live client applies the camera step it returns.
import { UplinkAudioOnly, UplinkFull, UplinkReduced, type UplinkState } from './protocol';

/** What Opus needs, with FEC, on a poor link. */
export const AUDIO_NEED = 40_000;
/** A layer looks right down to about half its cap; below that Chromium drops it itself. */
const LAYER_SHARE = 0.5;
/** Less than this for the imaging feed is taken as an estimate not settled yet. */
const IMAGING_FLOOR = 300_000;
/** The imaging feed is given what it asks for and a quarter more. */
const IMAGING_ROOM = 1.25;
/** How fast what the imaging feed asks for follows a lower rate it sends with room to spare, ms. */
const DEMAND_DECAY = 10_000;

/** One camera step: its encodings (getParameters order) and the rate it needs. */
export interface CameraStep {
  encodings: RTCRtpEncodingParameters[];
  need: number;
}

/**
 * cameraSteps: the camera's steps from the encodings it was published with (cameraEncodings),
 * best first. Simulcast drops its top layer, then the next, keeping `q`; one encoding halves
 * its resolution at a quarter of its rate. The last step sends no video.
 */
export function cameraSteps(published: RTCRtpEncodingParameters[]): CameraStep[] {
  // Every field a later step changes is set in the first, so stepping back up restores it.
  const base = published.map((e) => ({ ...e, active: true, scaleResolutionDownBy: e.scaleResolutionDownBy ?? 1 }));
  const need = (es: RTCRtpEncodingParameters[]) => es.reduce((n, e) => n + (e.active ? LAYER_SHARE * (e.maxBitrate ?? 0) : 0), 0);
  const steps: RTCRtpEncodingParameters[][] = [base];
  if (base.length > 1) {
    for (let top = base.length - 1; top >= 1; top--) steps.push(base.map((e, i) => ({ ...e, active: i < top })));
  } else if (base[0]) {
    const e = base[0];
    steps.push([{ ...e, maxBitrate: Math.round((e.maxBitrate ?? 1_200_000) / 4), scaleResolutionDownBy: 2 * (e.scaleResolutionDownBy ?? 1) }]);
  }
  steps.push(base.map((e) => ({ ...e, active: false })));
  return steps.map((encodings) => ({ encodings, need: need(encodings) }));
}

/** One getStats sample of the publishing connection, as the controller needs it. */
export interface UplinkSample {
  /** ms (Date.now()) */
  at: number;
  /** availableOutgoingBitrate of the selected candidate pair, bits/s; null before there is one. */
  estimate: number | null;
  /** Bytes the imaging feed has sent (all its encodings). */
  imagingBytes: number;
  /** The imaging encoder is held back by bandwidth (qualityLimitationReason). */
  imagingLimited: boolean;
  /** Bytes the camera's video has sent (all layers). */
  cameraBytes: number;
}

/** The senders' ids in getStats: the mids of the camera's video and the imaging feed. */
export interface UplinkMids {
  camera: string | null;
  imaging: string | null;
}

interface StatsRecord {
  type: string;
  id?: string;
  kind?: string;
  mid?: string;
  bytesSent?: number;
  qualityLimitationReason?: string;
  availableOutgoingBitrate?: number;
  nominated?: boolean;
  state?: string;
  selectedCandidatePairId?: string;
}

/** uplinkSample reads a sample from getStats of the "pub" connection. */
export function uplinkSample(stats: RTCStatsReport | Map<string, unknown>, mids: UplinkMids, at: number): UplinkSample {
  const sample: UplinkSample = { at, estimate: null, imagingBytes: 0, imagingLimited: false, cameraBytes: 0 };
  const all = [...(stats as Map<string, StatsRecord>).values()];
  const selected = new Set(all.filter((r) => r.type === 'transport' && r.selectedCandidatePairId).map((r) => r.selectedCandidatePairId));
  for (const r of all) {
    if (r.type === 'candidate-pair' && typeof r.availableOutgoingBitrate === 'number') {
      const chosen = selected.size > 0 ? selected.has(r.id) : r.nominated && r.state === 'succeeded';
      if (chosen) sample.estimate = r.availableOutgoingBitrate;
    }
    if (r.type !== 'outbound-rtp' || r.kind !== 'video' || r.mid === undefined) continue;
    if (r.mid === mids.imaging) {
      sample.imagingBytes += r.bytesSent ?? 0;
      sample.imagingLimited ||= r.qualityLimitationReason === 'bandwidth';
    } else if (r.mid === mids.camera) {
      sample.cameraBytes += r.bytesSent ?? 0;
    }
  }
  return sample;
}

export interface UplinkOptions {
  /** The camera's steps (cameraSteps); with none there is no camera video to step. */
  steps: CameraStep[];
  /** The imaging feed's cap, bits/s; 0: no imaging feed, and the camera has the whole uplink. */
  imagingMax: number;
  /** Consecutive short samples before a step down. */
  downAfter?: number;
  /** How long the estimate must carry the next step up before taking it, ms. */
  upAfter?: number;
  /**
   * No step down this long after the first sample, ms: the browser's estimate starts low
   * (Chromium's GCC at about 300 kbit/s) and ramps up over the first seconds, which is not a
   * thin link. Without it every call's start showed the clinic "poor uplink".
   */
  warmUp?: number;
}

/** What the controller decided after a sample. */
export interface UplinkDecision {
  step: number;
  state: UplinkState;
  /** The step changed with this sample: apply steps[step]. */
  changed: boolean;
}

/**
 * UplinkController keeps the camera's step. The budget is the estimate less audio and the
 * imaging feed's need: its cap while the encoder is held back by bandwidth, else what it asks
 * for (imagingDemand) and a quarter more (a still screen needs little; a cap it never uses
 * would pause the camera on a link that carries both). A sample is short when the imaging
 * encoder is held back or the budget is under the camera's need at its step; after downAfter
 * short samples in a row the camera goes one step down. It goes one step up only once the budget has carried
 * the step above for upAfter. Without an imaging feed it stays at the top: the browser's own
 * allocation of the camera's layers is as before.
 */
export class UplinkController {
  readonly steps: CameraStep[];
  readonly imagingMax: number;
  step = 0;
  private readonly downAfter: number;
  private readonly upAfter: number;
  private readonly warmUp: number;
  private firstAt: number | null = null;
  private last: UplinkSample | null = null;
  private short = 0;
  private roomSince: number | null = null;
  /** The imaging feed's rate at the last sample, bits/s (tests and logs). */
  imagingRate = 0;
  cameraRate = 0;
  /**
   * What the imaging feed asks for, bits/s: the most it sent lately. Chromium's encoder holds
   * a 720p feed to the estimate by its quantizer, still saying "none" for a limitation, so its
   * rate on a full link is what it is given, not what it needs. It follows a lower rate only
   * while the estimate would carry what it asked for (a screen gone still), never on a link
   * that holds it back.
   */
  imagingDemand = 0;

  constructor(opts: UplinkOptions) {
    this.steps = opts.steps;
    this.imagingMax = opts.imagingMax;
    this.downAfter = opts.downAfter ?? 2;
    this.upAfter = opts.upAfter ?? 5000;
    this.warmUp = opts.warmUp ?? 10_000;
  }

  get state(): UplinkState {
    return uplinkState(this.step, this.steps.length);
  }

  /** imagingNeed is what the imaging feed is given before the camera, bits/s. */
  imagingNeed(limited: boolean): number {
    if (this.imagingMax <= 0) return 0;
    if (limited) return this.imagingMax;
    return Math.min(this.imagingMax, Math.max(IMAGING_FLOOR, IMAGING_ROOM * this.imagingDemand));
  }

  update(s: UplinkSample): UplinkDecision {
    const prev = this.last;
    this.last = s;
    this.firstAt ??= s.at;
    const keep = (): UplinkDecision => ({ step: this.step, state: this.state, changed: false });
    if (!prev || s.at <= prev.at) return keep();
    const secs = (s.at - prev.at) / 1000;
    // Counters restart with a new connection: a negative difference is no rate.
    this.imagingRate = Math.max(0, (8 * (s.imagingBytes - prev.imagingBytes)) / secs);
    this.cameraRate = Math.max(0, (8 * (s.cameraBytes - prev.cameraBytes)) / secs);
    // Only a link that would carry what the feed asked for shows that it asks for less now.
    const spare = s.estimate !== null && s.estimate > IMAGING_ROOM * this.imagingDemand + this.cameraRate + AUDIO_NEED;
    if (this.imagingRate >= this.imagingDemand) this.imagingDemand = this.imagingRate;
    else if (spare) this.imagingDemand += (this.imagingRate - this.imagingDemand) * Math.min(1, (s.at - prev.at) / DEMAND_DECAY);
    if (this.imagingMax <= 0 || this.steps.length < 2 || s.estimate === null) return keep();
    const budget = s.estimate - AUDIO_NEED - this.imagingNeed(s.imagingLimited);
    const last = this.steps.length - 1;
    const need = (step: number) => this.steps[step]?.need ?? 0;
    const isShort = s.imagingLimited || budget < need(this.step);
    if (isShort && s.at - this.firstAt < this.warmUp) return keep();
    if (isShort) {
      this.roomSince = null;
      this.short++;
      if (this.short >= this.downAfter && this.step < last) return this.move(this.step + 1);
      return keep();
    }
    this.short = 0;
    if (this.step === 0 || budget < need(this.step - 1)) {
      this.roomSince = null;
      return keep();
    }
    this.roomSince ??= s.at;
    if (s.at - this.roomSince >= this.upAfter) return this.move(this.step - 1);
    return keep();
  }

  private move(step: number): UplinkDecision {
    this.step = step;
    this.short = 0;
    this.roomSince = null;
    return { step, state: this.state, changed: true };
  }
}

/** uplinkState names a step: the top is full, the last (no video) audio-only. */
export function uplinkState(step: number, steps: number): UplinkState {
  if (step <= 0 || steps < 2) return UplinkFull;
  return step >= steps - 1 ? UplinkAudioOnly : UplinkReduced;
}
