// A fake WebSocket for the live client's and the room store's tests: records what the client
// sends, and lets a test play the server.
import type { SocketLike } from './client';
import type { Message, MessagePayloads, Participant, Welcome } from './protocol';
import { defaultViewState } from './viewstate';

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  sent: Message[] = [];
  closed = false;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Message);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.readyState = 3;
  }

  /** open: the server accepted the connection. */
  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }

  /** serve: the server sends a message. */
  serve<K extends keyof MessagePayloads>(type: K, data: MessagePayloads[K]): void {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify({ type, data }) }));
  }

  /** drop: the connection went away (code 1006 unless said). */
  drop(code = 1006): void {
    this.closed = true;
    this.readyState = 3;
    this.onclose?.(new CloseEvent('close', { code }));
  }

  of<K extends keyof MessagePayloads>(type: K): MessagePayloads[K][] {
    return this.sent.filter((m) => m.type === type).map((m) => m.data as MessagePayloads[K]);
  }
}

/** Sockets keeps every socket a client opened, newest last. */
export function sockets(): { all: FakeSocket[]; last: () => FakeSocket; make: (url: string) => FakeSocket } {
  const all: FakeSocket[] = [];
  return {
    all,
    last: () => all[all.length - 1]!,
    make: (url: string) => {
      const s = new FakeSocket(url);
      all.push(s);
      return s;
    },
  };
}

export function participant(id: string, name: string, role = 'doctor'): Participant {
  return { id, name, role, connected: true, tracks: [], joinedAt: '2026-12-07T08:00:00Z' };
}

export function welcome(me: string, over: Partial<Welcome> = {}): Welcome {
  return {
    participant: me,
    resumeToken: `token-${me}`,
    resumed: false,
    graceSeconds: 60,
    iceServers: [],
    consultation: 7,
    participants: [participant(me, '韦东平'), participant('p2', '蓝秀英', 'clinic')],
    snapshot: { seq: 3, state: defaultViewState() },
    chat: [],
    control: { driver: me, requests: [] },
    ...over,
  };
}

/** memoryStorage is a sessionStorage stand-in. */
export function memoryStorage(): Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> & { items: Map<string, string> } {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => void items.set(k, v),
    removeItem: (k) => void items.delete(k),
  };
}
