import { defineStore } from 'pinia';
import { computed, markRaw, ref, shallowRef, triggerRef } from 'vue';
import { LiveClient, type ClientOptions, type ClientStatus, type ControlAction, type LocalMedia, type RemoteTrack, type AppliedRecord, type UplinkPlan } from '@/live/client';
import { UplinkController, uplinkSample } from '@/live/uplink';
import {
  counters,
  connectionType,
  ownCounters,
  ownQuality,
  received,
  type ConnectionType,
  type Counters,
  type OwnCounters,
  type QualityLevel,
  type ReceivedQuality,
} from '@/live/quality';
import { checkReachability, type Reachability } from '@/live/precall';
import { applyOp, cloneViewState, defaultViewState } from '@/live/viewstate';
import type { ChatMessage, ControlState, Op, OpApplied, Participant, ProtocolError, UplinkState, ViewState } from '@/live/protocol';

/** Ops only the driver may send (docs/protocol.md); pointer and annotations are anyone's. */
export const DRIVER_OPS: ReadonlySet<string> = new Set(['image', 'window', 'transform', 'cine', 'reset']);

/** A participant's media as shown in tiles: the face (camera with microphone) and the imaging feed. */
export interface RemoteMedia {
  camera: MediaStream;
  imaging: MediaStream | null;
  /** The camera video's size at each change, ms after join (the browser tests read it). */
  sizes: { t: number; w: number; h: number }[];
}

/** An own op sent and not yet applied by the room: shown at once, on top of the room's view. */
interface PendingOp {
  id: number;
  op: Op;
  until: number;
}

export interface RoomError {
  code: string;
  message: string;
  at: number;
}

/** How long an own op may wait for the room before it is no longer shown (pointer ops may be coalesced away). */
const PENDING_FOR = 3000;
const QUALITY_EVERY = 2000;
/** ICE on loopback connects in well under a second, over 4G in one or two: 10 s means it will not. */
const MEDIA_WITHIN = 10_000;

/**
 * useRoomStore wraps the live client (web/src/live/client.ts) with the state the room's
 * screens render: status, the room's view and this screen's own (when not following),
 * participants with their media and connection quality, the driver's seat, chat and errors.
 * Components render it and call its actions; nothing else talks to the client.
 */
export const useRoomStore = defineStore('room', () => {
  const client = shallowRef<LiveClient | null>(null);
  const consultation = ref(0);
  const status = ref<ClientStatus>('idle');
  const me = ref('');
  const seq = ref(0);
  const view = shallowRef<ViewState>(defaultViewState());
  const participants = shallowRef(new Map<string, Participant>());
  const control = ref<ControlState>({ driver: '', requests: [] });
  const chat = ref<ChatMessage[]>([]);
  const remote = shallowRef(new Map<string, RemoteMedia>());
  const errors = ref<RoomError[]>([]);
  const ended = ref('');
  const follow = ref(true);
  const localView = shallowRef<ViewState>(defaultViewState());
  const pending = shallowRef<PendingOp[]>([]);
  const quality = shallowRef<Record<string, ReceivedQuality>>({});
  const myConnection = ref<ConnectionType | null>(null);
  /** What the reachability check found (before joining, or after it with the welcome's ICE servers). */
  const reach = ref<Reachability | 'checking'>('unknown');
  const mediaState = ref<{ pub: RTCPeerConnectionState | ''; sub: RTCPeerConnectionState | '' }>({ pub: '', sub: '' });
  /** Media did not come up within MEDIA_WITHIN of the welcome, or failed: images and chat still work. */
  const mediaDown = ref(false);
  let mediaTimer: ReturnType<typeof setTimeout> | null = null;
  const local = shallowRef<LocalMedia>({});
  const micOn = ref(true);
  const cameraOn = ref(true);
  /** What this page's uplink lets it send (web/src/live/uplink.ts); full without an imaging feed. */
  const uplink = ref<UplinkState>('full');
  /** The imaging feed's and the camera's send rates at the last sample, bits/s (the tests read them). */
  const uplinkRates = ref({ imaging: 0, camera: 0, estimate: 0 });
  /** The controller's changes, newest last (at most 50): when, to what, and the sample's rates. */
  const uplinkChanges: { at: number; state: UplinkState; step: number; estimate: number; imaging: number; camera: number }[] = [];
  let uplinkCtl: UplinkController | null = null;
  let uplinkFor: UplinkPlan | null = null;
  let lastCounters: Counters | null = null;
  let lastOwn: OwnCounters | null = null;
  /** This page's figures go to the server every 5 s (docs/protocol.md: at most every few seconds). */
  const QUALITY_SEND_EVERY = 5000;
  let qualityTimer: ReturnType<typeof setInterval> | null = null;
  let pendingTimer: ReturnType<typeof setInterval> | null = null;
  const off: (() => void)[] = [];

  const driving = computed(() => me.value !== '' && control.value.driver === me.value);
  const asking = computed(() => control.value.requests.includes(me.value));
  const participantList = computed(() => [...participants.value.values()]);
  const others = computed(() => participantList.value.filter((p) => p.id !== me.value));

  /** The state the viewer shows: the room's with own ops not yet applied on top, or this screen's own. */
  const shownView = computed<ViewState>(() => {
    if (!follow.value) return localView.value;
    let s = view.value;
    for (const p of pending.value) s = applyOp(s, { seq: 0, by: me.value, op: p.op, time: new Date().toISOString() });
    return s;
  });

  /**
   * levelOf is a participant's quality: lost while away, else the server's level where it has
   * measured one, else what this page receives of them.
   */
  function levelOf(id: string): QualityLevel | '' {
    const p = participants.value.get(id);
    if (p && !p.connected) return 'lost';
    const server = p?.quality;
    if (server === 'good' || server === 'weak' || server === 'lost') return server;
    if (id === me.value) return '';
    return quality.value[id]?.level ?? '';
  }

  /** Sources each participant turned off (its last "media" message), by participant. */
  const remoteMuted = computed(() => Object.fromEntries([...participants.value.values()].map((p) => [p.id, p.muted ?? []])));

  /** Each participant's uplink state as it said it (absent: full), by participant. */
  const remoteUplink = computed(() => Object.fromEntries([...participants.value.values()].map((p) => [p.id, p.uplink ?? 'full'])));

  /** Display names by participant ID (others' laser pointers in the viewer). */
  const names = computed(() => Object.fromEntries([...participants.value.values()].map((p) => [p.id, p.name])));

  function nameOf(id: string): string {
    return participants.value.get(id)?.name ?? id;
  }

  function note(code: string, message: string): void {
    errors.value = [...errors.value.slice(-49), { code, message, at: Date.now() }];
  }

  function syncFromClient(c: LiveClient): void {
    me.value = c.me;
    seq.value = c.seq;
    view.value = c.view;
    participants.value = new Map(c.participants);
    control.value = { ...c.control, requests: [...(c.control.requests ?? [])] };
    chat.value = [...c.chat];
  }

  function onTrack(r: RemoteTrack): void {
    const m = new Map(remote.value);
    let media = m.get(r.participant);
    if (!media) {
      media = markRaw({ camera: new MediaStream(), imaging: null, sizes: [] }) as RemoteMedia;
      m.set(r.participant, media);
    }
    if (r.label === 'imaging') {
      media.imaging ??= new MediaStream();
      media.imaging.addTrack(r.track);
    } else {
      media.camera.addTrack(r.track);
    }
    remote.value = m;
    triggerRef(remote);
  }

  function onTrackEnded(r: RemoteTrack): void {
    const media = remote.value.get(r.participant);
    if (!media) return;
    media.camera.removeTrack(r.track);
    if (media.imaging) {
      media.imaging.removeTrack(r.track);
      if (media.imaging.getTracks().length === 0) media.imaging = null;
    }
    const m = new Map(remote.value);
    if (media.camera.getTracks().length === 0 && !media.imaging) m.delete(r.participant);
    remote.value = m;
  }

  function onApplied(a: OpApplied): void {
    seq.value = a.seq;
    view.value = client.value!.view;
    if (a.by === me.value && typeof a.op.sent === 'number') {
      // The room applied this op; it and any sent before it (pointer ops coalesced away) are done.
      const sent = a.op.sent;
      pending.value = pending.value.filter((p) => (p.op.sent ?? 0) > sent);
    }
  }

  function onError(e: ProtocolError): void {
    if (e.ref !== undefined && pending.value.some((p) => p.id === e.ref)) pending.value = pending.value.filter((p) => p.id !== e.ref);
    note(e.code, e.message);
  }

  /** join connects to a consultation's room; media is what to publish once captured. */
  function join(id: number, media: Promise<LocalMedia> | LocalMedia, options: Partial<ClientOptions> = {}, checked: Reachability = 'unknown'): LiveClient {
    reach.value = checked;
    if (client.value) client.value.close();
    for (const f of off.splice(0)) f();
    consultation.value = id;
    ended.value = '';
    errors.value = [];
    follow.value = true;
    pending.value = [];
    remote.value = new Map();
    const c = markRaw(new LiveClient({ consultation: id, ...options }));
    client.value = c;
    void Promise.resolve(media).then((m) => {
      local.value = m ?? {};
    });
    off.push(
      c.on('status', (s) => {
        status.value = s;
        if (s === 'ended') stopLocal();
      }),
      c.on('welcome', (w) => {
        syncFromClient(c);
        pending.value = [];
        if (mediaTimer) clearTimeout(mediaTimer);
        mediaTimer = setTimeout(() => {
          const up = c.sub?.connectionState === 'connected' || c.pub?.connectionState === 'connected';
          const expected = !!(local.value.camera || local.value.imaging) || [...c.participants.values()].some((p) => p.id !== c.me && p.tracks?.length);
          if (!up && expected) mediaDown.value = true;
        }, MEDIA_WITHIN);
        // No check before joining (no GET /api/ice-servers): check with the welcome's servers.
        if (reach.value === 'unknown' && w.iceServers?.length && typeof RTCPeerConnection !== 'undefined') {
          reach.value = 'checking';
          void checkReachability(w.iceServers).then((r) => (reach.value = r), () => (reach.value = 'unknown'));
        }
      }),
      c.on('snapshot', () => syncFromClient(c)),
      c.on('op', onApplied),
      c.on('participant', () => (participants.value = new Map(c.participants))),
      c.on('control', (s) => (control.value = { ...s, requests: [...(s.requests ?? [])] })),
      c.on('chat', () => (chat.value = [...c.chat])),
      c.on('error', onError),
      c.on('bye', (b) => (ended.value = b.reason)),
      c.on('track', onTrack),
      c.on('trackended', onTrackEnded),
      c.on('media', (m) => {
        mediaState.value = { ...mediaState.value, [m.pc]: m.state };
        if (m.state === 'connected') mediaDown.value = false;
        else if (m.pc === 'sub' && m.state === 'failed') mediaDown.value = true;
      }),
    );
    c.join(media);
    qualityTimer = setInterval(() => void sampleQuality(), QUALITY_EVERY);
    pendingTimer = setInterval(() => {
      const now = Date.now();
      if (pending.value.some((p) => p.until < now)) pending.value = pending.value.filter((p) => p.until >= now);
    }, 500);
    return c;
  }

  async function sampleQuality(): Promise<void> {
    const c = client.value;
    if (!c?.sub) return;
    try {
      const stats = await c.sub.getStats();
      const pubStats = c.pub ? await c.pub.getStats() : null;
      const now = Date.now();
      const cur = counters(stats, (trackId) => c.remote.get(trackId)?.participant, now);
      quality.value = received(lastCounters, cur);
      lastCounters = cur;
      myConnection.value = connectionType(stats) ?? (pubStats ? connectionType(pubStats) : null);
      if (pubStats) steerUplink(c, pubStats, now);
      const own = ownCounters(stats, pubStats, now);
      if (!lastOwn) lastOwn = own;
      else if (now - lastOwn.at >= QUALITY_SEND_EVERY) {
        c.sendQuality(ownQuality(lastOwn, own));
        lastOwn = own;
      }
    } catch {
      // a connection closed meanwhile
    }
  }

  /**
   * steerUplink gives the uplink controller a sample and applies its step: the camera gives
   * way so the imaging feed keeps its rate. A new plan (media published again) starts over.
   */
  function steerUplink(c: LiveClient, pubStats: RTCStatsReport, now: number): void {
    const plan = c.uplinkPlan;
    if (plan !== uplinkFor) {
      uplinkFor = plan;
      uplinkCtl = plan ? new UplinkController({ steps: plan.steps, imagingMax: plan.imagingMax }) : null;
      uplink.value = 'full';
    }
    if (!plan || !uplinkCtl) return;
    const sample = uplinkSample(pubStats, plan.mids(), now);
    const d = uplinkCtl.update(sample);
    uplinkRates.value = { imaging: Math.round(uplinkCtl.imagingRate), camera: Math.round(uplinkCtl.cameraRate), estimate: sample.estimate ?? 0 };
    if (d.changed) {
      uplink.value = d.state;
      uplinkChanges.push({ at: now, state: d.state, step: d.step, ...uplinkRates.value });
      if (uplinkChanges.length > 50) uplinkChanges.shift();
      void c.setCameraStep(d.step, d.state);
    }
  }

  function stopTimers(): void {
    if (mediaTimer) clearTimeout(mediaTimer);
    mediaTimer = null;
    if (qualityTimer) clearInterval(qualityTimer);
    if (pendingTimer) clearInterval(pendingTimer);
    qualityTimer = pendingTimer = null;
  }

  /** stopLocal stops the timers, the camera, the microphone and the imaging source. */
  function stopLocal(): void {
    stopTimers();
    for (const s of [local.value.camera, local.value.imaging]) s?.getTracks().forEach((t) => t.stop());
  }

  /** leave leaves for good. */
  function leave(): void {
    ended.value = ended.value || 'left';
    client.value?.leave();
    stopLocal();
  }

  /** close stops this page's side without leaving (navigating away keeps the place for the grace period). */
  function close(): void {
    client.value?.close();
    stopLocal();
  }

  /**
   * viewerOp takes an op from the viewer. Following, it goes to the room (view ops only when
   * driving) and is shown at once; not following, it changes this screen's own view only.
   */
  function viewerOp(op: Op): void {
    if (!follow.value) {
      localView.value = applyOp(localView.value, { seq: 0, by: me.value, op, time: new Date().toISOString() });
      return;
    }
    if (DRIVER_OPS.has(op.kind) && !driving.value) return;
    sendOp(op);
  }

  /** sendOp sends an op to the room as it is (the tests' hook), shown at once until applied. */
  function sendOp(op: Op): number {
    const c = client.value;
    if (!c) return 0;
    const id = c.sendOp(op);
    if (id) pending.value = [...pending.value, { id, op: { ...op }, until: Date.now() + PENDING_FOR }];
    return id;
  }

  function sendControl(action: ControlAction, to?: string): void {
    client.value?.sendControl(action, to);
  }

  function sendChat(text: string): boolean {
    const t = text.trim();
    if (!t) return false;
    return client.value?.sendChat(t) ?? false;
  }

  /** setFollow: unfollowing keeps the view where it is; following again jumps to the room's view. */
  function setFollow(on: boolean): void {
    if (!on && follow.value) localView.value = cloneViewState(shownView.value);
    follow.value = on;
  }

  function setMic(on: boolean): void {
    micOn.value = on;
    void client.value?.setSending('audio', on);
  }

  function setCamera(on: boolean): void {
    cameraOn.value = on;
    void client.value?.setSending('video', on);
  }

  /** noteFrame records a presented remote camera frame (size changes; the first frame's time). */
  function noteFrame(participant: string, m: VideoFrameCallbackMetadata): void {
    const c = client.value;
    const media = remote.value.get(participant);
    if (!c || !media) return;
    if (m.receiveTime) c.mark('frame.received', m.receiveTime);
    c.mark('frame', m.presentationTime);
    const last = media.sizes[media.sizes.length - 1];
    if (!last || last.w !== m.width || last.h !== m.height) media.sizes.push({ t: Math.round(m.presentationTime - c.joinAt), w: m.width, h: m.height });
  }

  const lastOps = (): AppliedRecord[] => client.value?.applied ?? [];

  return {
    client,
    consultation,
    status,
    me,
    seq,
    view,
    participants,
    participantList,
    names,
    others,
    control,
    chat,
    remote,
    errors,
    ended,
    follow,
    localView,
    shownView,
    quality,
    uplink,
    uplinkRates,
    uplinkChanges,
    remoteUplink,
    myConnection,
    reach,
    mediaState,
    mediaDown,
    local,
    micOn,
    remoteMuted,
    cameraOn,
    driving,
    asking,
    nameOf,
    levelOf,
    join,
    leave,
    close,
    viewerOp,
    sendOp,
    sendControl,
    sendChat,
    setFollow,
    setMic,
    setCamera,
    noteFrame,
    lastOps,
    note,
  };
});
