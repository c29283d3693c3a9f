// window.sanping: what the browser tests (server/browser_test.go, web/e2e/room.test.mjs) read
// of the room, the same names the plain-JS live page had. Reading it changes nothing; sendOp
// sends as the viewer would, sendChat as the chat panel would.
import type { useRoomStore, RemoteMedia } from '@/stores/room';
import type { AppliedRecord } from '@/live/client';
import type { ControlState, Op, Participant, ViewState } from '@/live/protocol';

type RoomStore = ReturnType<typeof useRoomStore>;

export interface SanpingHooks {
  readonly status: string;
  readonly me: string;
  readonly seq: number;
  /** The room's view state (what following screens show). */
  readonly view: ViewState;
  /** What this screen's viewer is given (its own view when not following). */
  readonly shown: ViewState;
  readonly follow: boolean;
  readonly participants: Map<string, Participant>;
  readonly control: ControlState;
  /** Ops applied here, newest last: seq, kind, by, sent, applied (Date.now()), latency. */
  readonly lastOps: AppliedRecord[];
  readonly errors: string[];
  readonly reconnects: number;
  readonly timeline: Record<string, number>;
  readonly joinAt: number;
  /** Remote participants' media: the face stream (camera and microphone) and camera sizes. */
  readonly remote: Map<string, RemoteMedia & { stream: MediaStream }>;
  readonly pub: RTCPeerConnection | null;
  /** This page's uplink state (web/src/live/uplink.ts) and its last sample's rates, bits/s. */
  readonly uplink: string;
  readonly uplinkRates: { imaging: number; camera: number; estimate: number };
  /** The uplink controller's changes, newest last: at (Date.now()), state, step and rates. */
  readonly uplinkChanges: readonly object[];
  readonly sub: RTCPeerConnection | null;
  /** Chat texts so far, oldest first. */
  readonly chat: string[];
  framesDecoded(): Promise<Record<string, number>>;
  sendOp(op: Op): number;
  sendChat(text: string): boolean;
}

declare global {
  interface Window {
    sanping?: SanpingHooks;
  }
}

export function installTestHooks(room: RoomStore): void {
  const hooks: SanpingHooks = {
    get status() {
      return room.status;
    },
    get me() {
      return room.me;
    },
    get seq() {
      return room.seq;
    },
    get view() {
      return room.view;
    },
    get shown() {
      return room.shownView;
    },
    get follow() {
      return room.follow;
    },
    get participants() {
      return room.participants;
    },
    get control() {
      return room.control;
    },
    get lastOps() {
      return room.lastOps();
    },
    get errors() {
      return room.errors.map((e) => `${e.code}: ${e.message}`);
    },
    get reconnects() {
      return room.client?.reconnects ?? 0;
    },
    get timeline() {
      return room.client?.timeline ?? {};
    },
    get joinAt() {
      return room.client?.joinAt ?? 0;
    },
    get remote() {
      const m = new Map<string, RemoteMedia & { stream: MediaStream }>();
      for (const [p, r] of room.remote) m.set(p, Object.assign(r, { stream: r.camera }));
      return m;
    },
    get pub() {
      return room.client?.pub ?? null;
    },
    get uplink() {
      return room.uplink;
    },
    get uplinkRates() {
      return room.uplinkRates;
    },
    get uplinkChanges() {
      return room.uplinkChanges;
    },
    get sub() {
      return room.client?.sub ?? null;
    },
    framesDecoded() {
      return room.client?.framesDecoded() ?? Promise.resolve({});
    },
    get chat() {
      return room.chat.map((c) => c.text);
    },
    sendOp(op: Op) {
      return room.sendOp(op);
    },
    sendChat(text: string) {
      return room.sendChat(text);
    },
  };
  window.sanping = hooks;
}
