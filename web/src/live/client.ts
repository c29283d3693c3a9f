// The browser's live-protocol client (docs/protocol.md), after Galene's protocol.js: one
// object that owns the websocket and the two peer connections of a participant, and that the
// UI calls and listens to. No Vue here: web/src/stores/room.ts wraps it with reactive state.
// The details that matter were learnt in the plain-JS page it replaces (web/static/live.js,
// history in git): see startMedia, cameraEncodings, onSubOffer and addRemoteTrack.
import {
  LabelCamera,
  LabelImaging,
  LabelMicrophone,
  PCPublish,
  PCSubscribe,
  TypeBye,
  TypeChat,
  TypeChatMessage,
  TypeControl,
  TypeControlled,
  TypeError as TypeErrorMessage,
  TypeHello,
  TypeLeave,
  TypeOp,
  TypeOpApplied,
  TypeParticipant,
  TypePing,
  TypeQuality,
  TypeMedia,
  TypePong,
  TypeSignal,
  TypeSnapshot,
  TypeWelcome,
  Version,
  type Bye,
  type ChatMessage,
  type ControlState,
  type ICEServer,
  type Message,
  type MessagePayloads,
  type Op,
  type OpApplied,
  type Participant,
  type ParticipantEvent,
  type ProtocolError,
  type Quality,
  type Signal,
  type Snapshot,
  type Track,
  type ViewState,
  type UplinkState,
  type Welcome,
} from './protocol';
import { applyOp, cloneViewState, defaultViewState } from './viewstate';
import { cameraSteps, type CameraStep, type UplinkMids } from './uplink';

export type ClientStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'ended';
export type ControlAction = 'request' | 'cancel' | 'give' | 'release' | 'take';
export type TrackLabel = typeof LabelCamera | typeof LabelMicrophone | typeof LabelImaging;

/** What this participant publishes: the face camera with microphone, and an imaging feed. */
export interface LocalMedia {
  camera?: MediaStream | null;
  imaging?: MediaStream | null;
}

/**
 * What the uplink controller (web/src/live/uplink.ts) steps: made anew each time media is
 * published, so a controller knows when to start over.
 */
export interface UplinkPlan {
  steps: CameraStep[];
  /** The imaging feed's cap; 0 without one. */
  imagingMax: number;
  /** The senders' mids (known once the offer is made). */
  mids(): UplinkMids;
}

/** The imaging feed's cap: ultrasound at 1280x720 with its text sharp. */
export const IMAGING_MAX_BITRATE = 2_500_000;

/** A remote track as it arrived on "sub", with what the server said it is. */
export interface RemoteTrack {
  participant: string;
  label: TrackLabel;
  track: MediaStreamTrack;
}

/** An op the room applied, with when this page applied it (Date.now()). */
export interface AppliedRecord {
  seq: number;
  kind: string;
  by: string;
  sent: number | null;
  applied: number;
  /** applied - sent: the round trip for own ops; across pages on one machine, the sync delay. */
  latency: number | null;
}

export interface ClientEvents {
  status: ClientStatus;
  /** welcome, snapshot or a resume: the whole room state was replaced. */
  welcome: Welcome;
  snapshot: Snapshot;
  op: OpApplied;
  participant: ParticipantEvent;
  control: ControlState;
  chat: ChatMessage;
  /** A request refused (error) or a local failure (code "local"). */
  error: ProtocolError;
  bye: Bye;
  track: RemoteTrack;
  trackended: RemoteTrack;
  /** pub or sub connection state changed. */
  media: { pc: 'pub' | 'sub'; state: RTCPeerConnectionState };
  /** A step of joining happened for the first time (ms after join started). */
  mark: { step: string; at: number };
}

type Listener<T> = (value: T) => void;

/** The socket the client needs (the browser's WebSocket, or a fake in tests). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  onclose: ((ev: CloseEvent) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ClientOptions {
  consultation: number;
  /** ws(s)://host/api/consultations/{id}/live by default. */
  url?: string;
  socket?: (url: string) => SocketLike;
  /** null: no media at all (tests, a browser without WebRTC). */
  peerConnection?: ((config: RTCConfiguration) => RTCPeerConnection) | null;
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;
  /** Delay before reconnect attempt n (1, 2, ...). */
  backoff?: (attempt: number) => number;
  pingEvery?: number;
  /** A socket silent this long is taken for dead (the server pings every 10 s). */
  silentFor?: number;
  clientName?: string;
  now?: () => number;
}

const OPEN = 1;

export function defaultBackoff(attempt: number): number {
  const base = Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5));
  return base / 2 + Math.random() * (base / 2);
}

/**
 * cameraEncodings: simulcast, so the SFU can pick a layer per receiver from its bandwidth.
 * Chromium sends no more layers than the capture size allows (2 below 960x540, 1 below
 * 480x270) and leaves the top ones it cannot send dark: a 640x480 camera asked for q, h and f
 * sent 160x120 and 320x240 only. So ask for as many as it sends, the top one at full size;
 * with two, keep q under it, the layer a starved 4G link can still take.
 */
export function cameraEncodings(width: number, height: number): RTCRtpEncodingParameters[] {
  const q = { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 };
  const h = { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 };
  const f = { rid: 'f', maxBitrate: 1_200_000 };
  if (width * height >= 960 * 540) return [q, h, f];
  if (width * height >= 480 * 270) return [q, f];
  return [{ maxBitrate: f.maxBitrate }];
}

/** The sessionStorage key of a consultation's resume token (one per tab, kept over a reload). */
export function resumeKey(consultation: number): string {
  return `sanping.resume.${consultation}`;
}

function isLabel(s: string | undefined): s is TrackLabel {
  return s === LabelCamera || s === LabelMicrophone || s === LabelImaging;
}

export class LiveClient {
  readonly consultation: number;
  status: ClientStatus = 'idle';
  me = '';
  seq = 0;
  view: ViewState = defaultViewState();
  participants = new Map<string, Participant>();
  control: ControlState = { driver: '', requests: [] };
  chat: ChatMessage[] = [];
  iceServers: ICEServer[] = [];
  /** Reconnects after the first welcome (a drop, a gap, a slow kick). */
  reconnects = 0;
  /** Ops this page applied, newest last (at most 500). */
  applied: AppliedRecord[] = [];
  /** Steps of joining (ms after join()), the first time each happened. */
  timeline: Record<string, number> = {};
  joinAt = 0;
  pub: RTCPeerConnection | null = null;
  sub: RTCPeerConnection | null = null;
  /** Last round trip of a ping, ms. */
  rtt = 0;

  private readonly opts: Required<Omit<ClientOptions, 'url' | 'peerConnection' | 'storage'>> & {
    url: string;
    peerConnection: ((config: RTCConfiguration) => RTCPeerConnection) | null;
    storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  };
  private ws: SocketLike | null = null;
  private listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();
  private nextId = 1;
  private lastSent = 0;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private pingSentAt = 0;
  private ending = false;
  private welcomed = false;
  private local: LocalMedia = {};
  private capture: Promise<void> = Promise.resolve();
  private pubTracks: Record<string, Track> = {};
  private senders = new Map<MediaStreamTrack, RTCRtpSender>();
  private silenced = new Set<string>();
  private cameraSender: RTCRtpSender | null = null;
  private uplink: UplinkState = 'full';
  /** The current plan for the uplink controller; null when nothing is published. */
  uplinkPlan: UplinkPlan | null = null;
  private pubCandidates: RTCIceCandidateInit[] = [];
  private subCandidates: RTCIceCandidateInit[] = [];
  private subQueue: Promise<void> = Promise.resolve();
  private subTracks = new Map<string, Track>();
  private arrived: RTCTrackEvent[] = [];
  /** Remote tracks shown, by track ID. */
  readonly remote = new Map<string, RemoteTrack>();

  constructor(options: ClientOptions) {
    this.consultation = options.consultation;
    const loc = typeof location === 'undefined' ? null : location;
    const url =
      options.url ??
      `${loc?.protocol === 'https:' ? 'wss' : 'ws'}://${loc?.host ?? 'localhost'}/api/consultations/${options.consultation}/live`;
    this.opts = {
      consultation: options.consultation,
      url,
      socket: options.socket ?? ((u) => new WebSocket(u)),
      peerConnection:
        options.peerConnection === undefined
          ? typeof RTCPeerConnection === 'undefined'
            ? null
            : (c) => new RTCPeerConnection(c)
          : options.peerConnection,
      storage: options.storage ?? (typeof sessionStorage === 'undefined' ? null : sessionStorage),
      backoff: options.backoff ?? defaultBackoff,
      pingEvery: options.pingEvery ?? 10_000,
      silentFor: options.silentFor ?? 30_000,
      clientName: options.clientName ?? `sanping-web/1 ${typeof navigator === 'undefined' ? '' : navigator.userAgent.slice(0, 120)}`,
      now: options.now ?? Date.now,
    };
  }

  on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const all = set as Set<Listener<ClientEvents[K]>>;
    all.add(fn);
    return () => all.delete(fn);
  }

  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const fn of (this.listeners.get(event) ?? []) as Set<Listener<ClientEvents[K]>>) {
      try {
        fn(value);
      } catch (err) {
        // A listener's bug must not stop the protocol.
        console.error(err);
      }
    }
  }

  /** mark notes the first time a step of joining happened (the browser tests read timeline). */
  mark(step: string, at: number = typeof performance === 'undefined' ? 0 : performance.now()): void {
    if (!this.joinAt || !at || step in this.timeline) return;
    this.timeline[step] = Math.round(at - this.joinAt);
    this.emit('mark', { step, at: this.timeline[step] });
  }

  private setStatus(s: ClientStatus): void {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  /**
   * join connects to the room. media, when given, is what to publish once it is captured: the
   * room is joined meanwhile (receiving the others does not wait for the camera, ~0.6 s).
   */
  join(media?: Promise<LocalMedia> | LocalMedia): void {
    this.joinAt = typeof performance === 'undefined' ? 0 : performance.now();
    this.timeline = {};
    this.ending = false;
    this.capture = Promise.resolve(media).then((m) => {
      this.local = m ?? {};
      if (m?.camera) this.mark('camera');
    });
    this.connect();
  }

  private connect(): void {
    this.clearTimers();
    this.setStatus(this.welcomed ? 'reconnecting' : 'connecting');
    let ws: SocketLike;
    try {
      ws = this.opts.socket(this.opts.url);
    } catch (err) {
      this.localError(`websocket: ${String(err)}`);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.mark('ws.open');
      this.lastHeard = this.opts.now();
      const resume = this.opts.storage?.getItem(resumeKey(this.consultation)) ?? '';
      // A page load never has its old peer connections: media starts afresh then.
      const keepMedia = resume !== '' && this.pub !== null;
      this.send(TypeHello, { protocol: Version, client: this.opts.clientName, resume, keepMedia });
      this.pingTimer = setInterval(() => this.tick(), Math.min(this.opts.pingEvery, 5000));
    };
    ws.onmessage = (e: MessageEvent) => {
      if (this.ws !== ws) return;
      this.lastHeard = this.opts.now();
      let m: Message;
      try {
        m = JSON.parse(String(e.data)) as Message;
      } catch {
        this.localError('bad message from the server');
        return;
      }
      this.handle(m);
    };
    ws.onerror = () => undefined;
    ws.onclose = (e: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      // 1008: the server refused what we sent three times; trying again would do the same.
      if (this.ending || e.code === 1008) {
        // The room is gone for this page (closed, replaced elsewhere, refused): so is its media.
        this.closeMedia();
        this.setStatus('ended');
        return;
      }
      this.scheduleReconnect();
    };
  }

  private tick(): void {
    const now = this.opts.now();
    if (now - this.lastHeard > this.opts.silentFor) {
      // A half-open socket (the 4G link went away without a FIN): drop it and resume.
      this.drop();
      return;
    }
    if (now - this.pingSentAt >= this.opts.pingEvery) {
      this.pingSentAt = now;
      this.send(TypePing, undefined);
    }
  }

  private clearTimers(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private scheduleReconnect(): void {
    this.setStatus('reconnecting');
    this.attempt++;
    this.retryTimer = setTimeout(() => this.connect(), this.opts.backoff(this.attempt));
  }

  /** drop closes the socket and resumes at once (a seq gap, a dead socket). */
  drop(): void {
    const ws = this.ws;
    this.ws = null;
    this.clearTimers();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    this.attempt = 0;
    this.connect();
  }

  private send<K extends keyof MessagePayloads>(type: K, data: MessagePayloads[K], id?: number): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    const m: Message = { type, data };
    if (id !== undefined) m.id = id;
    ws.send(JSON.stringify(m));
    return true;
  }

  /** sendOp stamps op.sent (unique and increasing on this page) and sends it; returns its request ID, or 0 when offline. */
  sendOp(op: Op): number {
    const sent = Math.max(this.opts.now(), this.lastSent + 1);
    this.lastSent = sent;
    op.sent = sent;
    const id = this.nextId++;
    return this.send(TypeOp, op, id) ? id : 0;
  }

  sendControl(action: ControlAction, to?: string): boolean {
    return this.send(TypeControl, to ? { action, to } : { action }, this.nextId++);
  }

  sendChat(text: string): boolean {
    return this.send(TypeChat, { text }, this.nextId++);
  }

  /** sendQuality tells the server this page's own figures (getStats); they count towards its level. */
  sendQuality(q: Quality): boolean {
    return this.send(TypeQuality, q);
  }

  /** leave leaves for good: no resume, the peer connections closed, local tracks stopped. */
  leave(): void {
    this.ending = true;
    this.send(TypeLeave, undefined);
    this.opts.storage?.removeItem(resumeKey(this.consultation));
    this.close();
  }

  /** close stops everything without leaving (the server keeps the place for the grace period). */
  close(): void {
    this.ending = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.closeMedia();
    this.setStatus('ended');
  }

  private localError(message: string): void {
    this.emit('error', { code: 'local', message });
  }

  private handle(m: Message): void {
    switch (m.type) {
      case TypeWelcome:
        return this.onWelcome(m.data as Welcome);
      case TypeOpApplied:
        return this.onApplied(m.data as OpApplied);
      case TypeSnapshot: {
        const s = m.data as Snapshot;
        this.seq = s.seq;
        this.view = s.state;
        this.emit('snapshot', s);
        return;
      }
      case TypeParticipant: {
        const ev = m.data as ParticipantEvent;
        if (ev.event === 'left') this.participants.delete(ev.participant.id);
        else this.participants.set(ev.participant.id, ev.participant);
        if (ev.event === 'left') this.dropRemote(ev.participant.id);
        this.emit('participant', ev);
        return;
      }
      case TypeControlled:
        this.control = m.data as ControlState;
        this.emit('control', this.control);
        return;
      case TypeChatMessage: {
        const c = m.data as ChatMessage;
        this.chat.push(c);
        this.emit('chat', c);
        return;
      }
      case TypeSignal:
        void this.onSignal(m.data as Signal);
        return;
      case TypeErrorMessage:
        this.emit('error', m.data as ProtocolError);
        return;
      case TypePong:
        if (this.pingSentAt) this.rtt = this.opts.now() - this.pingSentAt;
        return;
      case TypeBye: {
        const b = m.data as Bye;
        // Slow: kicked for not reading fast enough; resuming starts from a snapshot. Any other
        // reason (the room closed, replaced by this participant elsewhere, flooding) is final.
        if (b.reason !== 'slow') {
          this.ending = true;
          if (b.reason !== 'replaced') this.opts.storage?.removeItem(resumeKey(this.consultation));
        }
        this.emit('bye', b);
        return;
      }
    }
  }

  private onWelcome(w: Welcome): void {
    this.mark('welcome');
    if (this.welcomed) this.reconnects++;
    this.welcomed = true;
    this.attempt = 0;
    this.me = w.participant;
    this.opts.storage?.setItem(resumeKey(this.consultation), w.resumeToken);
    this.seq = w.snapshot.seq;
    this.view = w.snapshot.state ?? defaultViewState();
    this.control = w.control;
    this.participants = new Map(w.participants.map((p) => [p.id, p]));
    this.chat = [...(w.chat ?? [])];
    this.iceServers = w.iceServers ?? [];
    this.setStatus('connected');
    this.emit('welcome', w);
    // A new participant starts unmuted at the server; a resumed one kept what it had.
    const mine = w.participants.find((p) => p.id === w.participant);
    if ((mine?.muted ?? []).join() !== this.mutedLabels().join() || (mine?.uplink ?? 'full') !== this.uplink) this.sendMuted();
    if (w.resumed && this.pub) return; // the server kept our media
    void this.startMedia();
  }

  private onApplied(a: OpApplied): void {
    if (a.seq <= this.seq) return; // already in the snapshot
    if (a.seq !== this.seq + 1) {
      // A gap: an op was lost to us. Resume: the welcome brings a snapshot.
      this.drop();
      return;
    }
    this.seq = a.seq;
    this.view = applyOp(this.view, a);
    const now = this.opts.now();
    const sent = typeof a.op.sent === 'number' && a.op.sent > 0 ? a.op.sent : null;
    this.applied.push({ seq: a.seq, kind: a.op.kind, by: a.by, sent, applied: now, latency: sent === null ? null : now - sent });
    if (this.applied.length > 500) this.applied.splice(0, this.applied.length - 500);
    this.emit('op', a);
  }

  /** viewCopy is the room's view, safe to change. */
  viewCopy(): ViewState {
    return cloneViewState(this.view);
  }

  // ------------------------------------------------------------------ media

  /** setMedia changes what is published (an imaging feed added or removed): "pub" offers again. */
  async setMedia(media: LocalMedia): Promise<void> {
    this.local = media;
    this.capture = Promise.resolve();
    if (this.pub && this.status === 'connected') await this.startMedia();
  }

  private closeMedia(): void {
    for (const pc of [this.pub, this.sub]) pc?.close();
    this.pub = this.sub = null;
    for (const r of this.remote.values()) this.emit('trackended', r);
    this.remote.clear();
  }

  /**
   * startMedia makes both peer connections at once, so the SFU's sub offer finds its
   * connection, and publishes once the capture is done.
   */
  private async startMedia(): Promise<void> {
    const make = this.opts.peerConnection;
    if (!make) return;
    this.closeMedia();
    const config: RTCConfiguration = { iceServers: this.iceServers.map((s) => ({ ...s })), bundlePolicy: 'max-bundle' };
    this.pubCandidates = [];
    this.subCandidates = [];
    this.arrived = [];
    this.subQueue = Promise.resolve();
    const sub = make(config);
    this.sub = sub;
    sub.onicecandidate = (e) => {
      if (e.candidate) {
        this.mark('sub.candidate');
        this.send(TypeSignal, { pc: PCSubscribe, candidate: e.candidate.toJSON() as Signal['candidate'] });
      }
    };
    sub.ontrack = (e) => {
      this.mark('sub.track');
      this.arrived.push(e);
    };
    sub.oniceconnectionstatechange = () => {
      this.mark('sub.ice.' + sub.iceConnectionState);
      if (sub.iceConnectionState === 'failed' && this.sub === sub) this.send(TypeSignal, { pc: PCSubscribe, restart: true });
    };
    sub.onconnectionstatechange = () => {
      this.mark('sub.' + sub.connectionState);
      this.emit('media', { pc: 'sub', state: sub.connectionState });
    };
    const pub = make(config);
    this.pub = pub;
    pub.onicecandidate = (e) => {
      if (e.candidate) this.send(TypeSignal, { pc: PCPublish, candidate: e.candidate.toJSON() as Signal['candidate'] });
    };
    pub.oniceconnectionstatechange = () => {
      if (pub.iceConnectionState === 'failed' && this.pub === pub) void this.offerPub(true);
    };
    pub.onconnectionstatechange = () => {
      this.mark('pub.' + pub.connectionState);
      this.emit('media', { pc: 'pub', state: pub.connectionState });
    };
    await this.capture;
    if (this.pub !== pub) return; // a newer welcome started media again meanwhile
    const tracks: Record<string, Track> = {};
    const stream = new MediaStream();
    this.senders.clear();
    this.cameraSender = null;
    let cameraTr: RTCRtpTransceiver | null = null;
    let imagingTr: RTCRtpTransceiver | null = null;
    let published: RTCRtpEncodingParameters[] = [];
    for (const t of this.local.camera?.getTracks() ?? []) {
      if (t.readyState === 'ended') continue;
      stream.addTrack(t);
      const init: RTCRtpTransceiverInit = { direction: 'sendonly', streams: [stream] };
      if (t.kind === 'video') {
        const { width = 640, height = 480 } = t.getSettings();
        init.sendEncodings = cameraEncodings(width, height);
      }
      const tr = pub.addTransceiver(t, init);
      this.senders.set(t, tr.sender);
      if (t.kind === 'video') {
        cameraTr = tr;
        this.cameraSender = tr.sender;
        published = init.sendEncodings ?? [];
      }
      if (this.silenced.has(t.kind)) await tr.sender.replaceTrack(null);
      tracks[t.id] = { id: t.id, kind: t.kind, label: t.kind === 'audio' ? LabelMicrophone : LabelCamera };
    }
    const imaging = this.local.imaging?.getVideoTracks().find((t) => t.readyState !== 'ended');
    if (imaging) {
      // Ultrasound is motion and text: keep detail in the encoder, and the frame rate when
      // the link is short (lower the resolution first). High priority: Chromium's allocator
      // weighs its share of the estimate over the camera's layers (web/src/live/uplink.ts).
      imaging.contentHint = 'detail';
      const tr = pub.addTransceiver(imaging, {
        direction: 'sendonly',
        streams: [stream],
        sendEncodings: [{ maxBitrate: IMAGING_MAX_BITRATE, priority: 'high', networkPriority: 'high' }],
      });
      imagingTr = tr;
      const p = tr.sender.getParameters();
      p.degradationPreference = 'maintain-framerate';
      await tr.sender.setParameters(p).catch(() => undefined);
      tracks[imaging.id] = { id: imaging.id, kind: 'video', label: LabelImaging };
    }
    this.pubTracks = tracks;
    const cam = cameraTr as RTCRtpTransceiver | null;
    const img = imagingTr as RTCRtpTransceiver | null;
    this.uplinkPlan = cam || img ? { steps: cam ? cameraSteps(published) : [], imagingMax: img ? IMAGING_MAX_BITRATE : 0, mids: () => ({ camera: cam?.mid ?? null, imaging: img?.mid ?? null }) } : null;
    this.setUplink('full');
    if (Object.keys(tracks).length > 0) await this.offerPub(false);
  }

  private async offerPub(iceRestart: boolean): Promise<void> {
    const pub = this.pub;
    if (!pub) return;
    try {
      const offer = await pub.createOffer({ iceRestart });
      await pub.setLocalDescription(offer);
      this.send(TypeSignal, { pc: PCPublish, sdp: { type: offer.type, sdp: offer.sdp ?? '' }, tracks: this.pubTracks });
      this.mark('pub.offer');
    } catch (err) {
      this.localError(`pub: ${String(err)}`);
    }
  }

  /**
   * setSending mutes or unmutes the camera's audio or video: a muted track is taken off its
   * sender, so nothing is sent (not even silence or black frames) and others see it muted.
   */
  async setSending(kind: 'audio' | 'video', on: boolean): Promise<void> {
    if (on) this.silenced.delete(kind);
    else this.silenced.add(kind);
    this.sendMuted();
    for (const t of this.local.camera?.getTracks() ?? []) {
      if (t.kind !== kind) continue;
      t.enabled = on;
      await this.senders.get(t)?.replaceTrack(on ? t : null).catch(() => undefined);
    }
  }

  /**
   * setCameraStep sends the camera's video as the uplink controller's step says (an index
   * into uplinkPlan.steps): some simulcast layers or none, without renegotiating.
   */
  async setCameraStep(step: number, state: UplinkState): Promise<void> {
    const sender = this.cameraSender;
    const plan = this.uplinkPlan;
    const want = plan?.steps[step];
    if (sender && want) {
      const p = sender.getParameters();
      p.encodings.forEach((e, i) => {
        const w = want.encodings[i];
        if (!w) return;
        e.active = w.active ?? true;
        if (w.maxBitrate !== undefined) e.maxBitrate = w.maxBitrate;
        if (w.scaleResolutionDownBy !== undefined) e.scaleResolutionDownBy = w.scaleResolutionDownBy;
      });
      try {
        await sender.setParameters(p);
      } catch (err) {
        this.localError(`camera step ${step}: ${String(err)}`);
      }
    }
    this.setUplink(state);
  }

  /** setUplink tells the room what this page's uplink lets it send (docs/protocol.md "media"). */
  private setUplink(state: UplinkState): void {
    if (this.uplink === state) return;
    this.uplink = state;
    this.sendMuted();
  }

  /** mutedLabels: the sources this page has turned off, as the protocol names them. */
  private mutedLabels(): string[] {
    const out: string[] = [];
    if (this.silenced.has('audio')) out.push('microphone');
    if (this.silenced.has('video')) out.push('camera');
    return out;
  }

  /** sendMuted tells the room what is turned off and the uplink's state, so the others show it (docs/protocol.md "media"). */
  private sendMuted(): void {
    // Absent is full (as from older clients).
    this.send(TypeMedia, this.uplink === 'full' ? { muted: this.mutedLabels() } : { muted: this.mutedLabels(), uplink: this.uplink });
  }

  /** restartIce asks for new ICE on both connections (after a network change). */
  restartIce(): void {
    if (this.pub && Object.keys(this.pubTracks).length > 0) void this.offerPub(true);
    if (this.sub) this.send(TypeSignal, { pc: PCSubscribe, restart: true });
  }

  private async onSignal(s: Signal): Promise<void> {
    const pc = s.pc === PCPublish ? this.pub : this.sub;
    if (!pc) return;
    const pending = s.pc === PCPublish ? this.pubCandidates : this.subCandidates;
    if (s.sdp) {
      this.mark(`${s.pc}.${s.sdp.type}`);
      if (s.pc === PCSubscribe) this.onSubOffer(pc, s);
      else {
        try {
          await pc.setRemoteDescription(s.sdp as RTCSessionDescriptionInit);
          for (const c of pending.splice(0)) await pc.addIceCandidate(c).catch(() => undefined);
        } catch (err) {
          this.localError(`pub: ${String(err)}`);
        }
      }
    }
    if (s.candidate) {
      this.mark(`${s.pc}.remote.candidate`);
      if (pc.remoteDescription) await pc.addIceCandidate(s.candidate).catch(() => undefined);
      else pending.push(s.candidate);
    }
  }

  /**
   * onSubOffer answers the server's offers one at a time, in order. An offer sent again (the
   * answer was lost, docs/protocol.md) is answered again, the same way.
   */
  private onSubOffer(pc: RTCPeerConnection, s: Signal): void {
    for (const [id, t] of Object.entries(s.tracks ?? {})) this.subTracks.set(id, t);
    this.subQueue = this.subQueue
      .then(async () => {
        if (this.sub !== pc) return;
        await pc.setRemoteDescription(s.sdp as RTCSessionDescriptionInit);
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        this.send(TypeSignal, { pc: PCSubscribe, sdp: { type: answer.type, sdp: answer.sdp ?? '' } });
        this.mark('sub.answer');
        for (const c of this.subCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => undefined);
        // Only now the tracks go to the page: making a <video> holds the page's thread ~0.3 s
        // (headless Chromium, 2 cores), which in ontrack held back the answer and candidates.
        for (const e of this.arrived.splice(0)) this.addRemoteTrack(e);
      })
      .catch((err) => this.localError(`sub: ${String(err)}`));
  }

  /**
   * addRemoteTrack announces a remote track. A track the SFU stops forwarding (its publisher
   * reloaded and publishes anew) does not end: it is muted and leaves the stream it came in,
   * and must leave the page too, or a video keeps showing its last frame instead of the new one.
   */
  private addRemoteTrack(e: RTCTrackEvent): void {
    const source = e.streams[0];
    const info = this.subTracks.get(e.track.id);
    const participant = info?.participant ?? source?.id ?? 'unknown';
    const label: TrackLabel = isLabel(info?.label) ? info.label : e.track.kind === 'audio' ? LabelMicrophone : LabelCamera;
    const r: RemoteTrack = { participant, label, track: e.track };
    this.remote.set(e.track.id, r);
    const gone = () => {
      if (this.remote.get(e.track.id) !== r) return;
      this.remote.delete(e.track.id);
      this.emit('trackended', r);
    };
    e.track.addEventListener('ended', gone);
    source?.addEventListener('removetrack', (ev) => {
      if (ev.track === e.track) gone();
    });
    this.emit('track', r);
  }

  private dropRemote(participant: string): void {
    for (const [id, r] of this.remote) {
      if (r.participant !== participant) continue;
      this.remote.delete(id);
      this.emit('trackended', r);
    }
  }

  // ------------------------------------------------------------------ stats

  /** framesDecoded: video frames decoded so far, per remote participant. */
  async framesDecoded(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    if (!this.sub) return out;
    const byTrack = new Map<string, number>();
    (await this.sub.getStats()).forEach((s: { type: string; kind?: string; trackIdentifier?: string; framesDecoded?: number }) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier) byTrack.set(s.trackIdentifier, s.framesDecoded ?? 0);
    });
    for (const [id, r] of this.remote) {
      if (r.track.kind !== 'video') continue;
      out[r.participant] = (out[r.participant] ?? 0) + (byTrack.get(id) ?? 0);
    }
    return out;
  }
}
