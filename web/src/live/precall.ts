// The pre-call check's pieces: devices, capture, the microphone's level, a speaker tone and
// whether media can reach the server (direct UDP, only through TURN, or not at all).
import type { ICEServer } from './protocol';
import type { LocalMedia } from './client';

export interface DeviceChoice {
  /** videoinput deviceId, '' for the default, 'none' for no camera */
  camera: string;
  /** audioinput deviceId, '' for the default, 'none' for no microphone */
  microphone: string;
  /** 'none', 'screen', or a videoinput deviceId (a second camera, an ultrasound capture card) */
  imaging: string;
}

export const NO_DEVICE = 'none';
export const SCREEN = 'screen';

export interface Devices {
  cameras: MediaDeviceInfo[];
  microphones: MediaDeviceInfo[];
  speakers: MediaDeviceInfo[];
}

export async function listDevices(): Promise<Devices> {
  const all = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
  return {
    cameras: all.filter((d) => d.kind === 'videoinput'),
    microphones: all.filter((d) => d.kind === 'audioinput'),
    speakers: all.filter((d) => d.kind === 'audiooutput'),
  };
}

/** captureFace opens the face camera and microphone as chosen (either may be 'none'). */
export async function captureFace(c: DeviceChoice): Promise<MediaStream | null> {
  const audio: MediaTrackConstraints | boolean = c.microphone === NO_DEVICE ? false : c.microphone ? { deviceId: { exact: c.microphone } } : true;
  const video: MediaTrackConstraints | boolean =
    c.camera === NO_DEVICE ? false : { width: 640, height: 480, ...(c.camera ? { deviceId: { exact: c.camera } } : {}) };
  if (!audio && !video) return null;
  return navigator.mediaDevices.getUserMedia({ audio, video });
}

/**
 * captureImaging opens the imaging feed: the screen, or a second video device (an ultrasound
 * machine's capture card) at a higher resolution than the face camera and its full frame rate.
 */
export async function captureImaging(c: DeviceChoice): Promise<MediaStream | null> {
  if (c.imaging === NO_DEVICE || !c.imaging) return null;
  if (c.imaging === SCREEN) return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
  return navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { deviceId: { exact: c.imaging }, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
  });
}

/** capture opens what was chosen; a failing imaging source leaves the face camera on. */
export async function capture(c: DeviceChoice, onError: (what: 'camera' | 'imaging', err: unknown) => void): Promise<LocalMedia> {
  const out: LocalMedia = {};
  try {
    out.camera = await captureFace(c);
  } catch (err) {
    onError('camera', err);
  }
  try {
    out.imaging = await captureImaging(c);
  } catch (err) {
    onError('imaging', err);
  }
  return out;
}

export function stopMedia(m: LocalMedia | null | undefined): void {
  for (const s of [m?.camera, m?.imaging]) s?.getTracks().forEach((t) => t.stop());
}

/** LevelMeter reads a microphone's level (0..1) for the meter in the pre-call check. */
export class LevelMeter {
  private ctx: AudioContext;
  private analyser: AnalyserNode;
  private buf: Float32Array<ArrayBuffer>;

  constructor(stream: MediaStream) {
    this.ctx = new AudioContext();
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 512;
    this.buf = new Float32Array(this.analyser.fftSize);
    this.ctx.createMediaStreamSource(stream).connect(this.analyser);
  }

  /** level is the RMS of the last 512 samples, scaled so that speech fills most of the meter. */
  level(): number {
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const v of this.buf) sum += v * v;
    return Math.min(1, Math.sqrt(sum / this.buf.length) * 4);
  }

  close(): void {
    void this.ctx.close();
  }
}

/** playTone plays a 440 Hz tone for ms on the chosen speaker (where setSinkId exists). */
export async function playTone(ms = 800, sinkId = ''): Promise<void> {
  const ctx = new AudioContext();
  const withSink = ctx as AudioContext & { setSinkId?: (id: string) => Promise<void> };
  if (sinkId && withSink.setSinkId) await withSink.setSinkId(sinkId).catch(() => undefined);
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.frequency.value = 440;
  gain.gain.value = 0.2;
  osc.connect(gain).connect(ctx.destination);
  osc.start();
  await new Promise((r) => setTimeout(r, ms));
  osc.stop();
  await ctx.close();
}

/** What the reachability check found. */
export type Reachability = 'direct' | 'relay' | 'none' | 'unknown';

/**
 * checkReachability gathers ICE candidates against the server's STUN/TURN servers: a
 * server-reflexive candidate means UDP reaches the server and comes back (direct media
 * works); only a relay candidate means media must go through TURN (TCP or TLS 443); neither
 * means no media, while images and chat still work over the websocket. Without ICE servers
 * nothing can be said before joining ('unknown').
 */
export async function checkReachability(iceServers: ICEServer[], within = 5000, make = (c: RTCConfiguration) => new RTCPeerConnection(c)): Promise<Reachability> {
  if (iceServers.length === 0 || typeof RTCPeerConnection === 'undefined') return 'unknown';
  const pc = make({ iceServers: iceServers.map((s) => ({ ...s })) });
  let srflx = false;
  let relay = false;
  try {
    pc.createDataChannel('check');
    const done = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, within);
      pc.onicecandidate = (e) => {
        const c = e.candidate?.candidate ?? '';
        if (/ typ srflx/.test(c)) srflx = true;
        if (/ typ relay/.test(c)) relay = true;
        if (!e.candidate || (srflx && relay)) {
          clearTimeout(t);
          resolve();
        }
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    await done;
  } finally {
    pc.close();
  }
  if (srflx) return 'direct';
  if (relay) return 'relay';
  return 'none';
}

/** iceServersForCheck asks the server for ICE servers (GET /api/ice-servers); null when it has none to give. */
export async function iceServersForCheck(): Promise<ICEServer[] | null> {
  try {
    const res = await fetch('/api/ice-servers', { credentials: 'same-origin' });
    if (!res.ok) return null;
    const body = (await res.json()) as { iceServers?: ICEServer[] };
    return Array.isArray(body.iceServers) ? body.iceServers : null;
  } catch {
    return null;
  }
}
