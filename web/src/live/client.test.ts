import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LiveClient, cameraEncodings, resumeKey, type ClientOptions } from './client';
import { memoryStorage, participant, sockets, welcome } from './fakesocket';
import type { Hello, OpApplied } from './protocol';

function setup(over: Partial<ClientOptions> = {}) {
  const s = sockets();
  const storage = memoryStorage();
  const client = new LiveClient({ consultation: 7, url: 'ws://test/api/consultations/7/live', socket: s.make, peerConnection: null, storage, backoff: () => 100, ...over });
  return { s, storage, client };
}

function applied(seq: number, over: Partial<OpApplied> = {}): OpApplied {
  return { seq, by: 'p2', op: { kind: 'window', window: { center: seq, width: 400 }, sent: 1000 + seq }, time: '2026-12-07T08:00:00Z', ...over };
}

describe('LiveClient', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('says hello, takes the welcome and keeps the resume token for this tab', () => {
    const { s, storage, client } = setup();
    const statuses: string[] = [];
    client.on('status', (st) => statuses.push(st));
    client.join();
    expect(s.last().url).toBe('ws://test/api/consultations/7/live');
    s.last().open();
    const [hello] = s.last().of('hello');
    expect(hello).toMatchObject({ protocol: 1, resume: '', keepMedia: false });
    expect(hello!.client).toMatch(/^sanping-web\/1/);
    s.last().serve('welcome', welcome('p1', { chat: [{ id: 1, participant: 'p2', name: '蓝秀英', text: '您好', time: '2026-12-07T08:00:00Z' }] }));
    expect(client.me).toBe('p1');
    expect(client.seq).toBe(3);
    expect(client.participants.size).toBe(2);
    expect(client.chat.map((c) => c.text)).toEqual(['您好']);
    expect(storage.getItem(resumeKey(7))).toBe('token-p1');
    expect(statuses).toEqual(['connecting', 'connected']);
  });

  it('applies ops in order, ignores ones already in the snapshot, and records their delay', () => {
    const { s, client } = setup({ now: () => 1100 });
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    const seen: number[] = [];
    client.on('op', (a) => seen.push(a.seq));
    s.last().serve('op.applied', applied(3)); // in the snapshot already
    s.last().serve('op.applied', applied(4));
    s.last().serve('op.applied', applied(5));
    expect(seen).toEqual([4, 5]);
    expect(client.seq).toBe(5);
    expect(client.view.window).toEqual({ center: 5, width: 400 });
    expect(client.applied.map((a) => [a.seq, a.latency])).toEqual([
      [4, 1100 - 1004],
      [5, 1100 - 1005],
    ]);
    expect(s.all).toHaveLength(1);
  });

  it('reconnects with the resume token at a gap in seq and takes the snapshot', () => {
    const { s, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    s.last().serve('op.applied', applied(5)); // 4 is missing
    expect(s.all).toHaveLength(2);
    expect(s.all[0]!.closed).toBe(true);
    expect(client.seq).toBe(3);
    s.last().open();
    expect(s.last().of('hello')[0]).toMatchObject({ resume: 'token-p1', keepMedia: false });
    const state = { ...client.view, window: { center: 9, width: 9 } };
    s.last().serve('welcome', welcome('p1', { resumed: true, snapshot: { seq: 9, state } }));
    expect(client.seq).toBe(9);
    expect(client.view.window.center).toBe(9);
    expect(client.reconnects).toBe(1);
    // Ops from the old socket no longer count.
    s.all[0]!.serve('op.applied', applied(10));
    expect(client.seq).toBe(9);
  });

  it('reconnects after a drop with backoff, and the server resumes it', () => {
    const delays: number[] = [];
    const { s, client } = setup({
      backoff: (n) => {
        delays.push(n);
        return 250 * n;
      },
    });
    const statuses: string[] = [];
    client.on('status', (st) => statuses.push(st));
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    s.last().drop();
    expect(statuses.at(-1)).toBe('reconnecting');
    vi.advanceTimersByTime(249);
    expect(s.all).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(s.all).toHaveLength(2);
    s.last().drop(); // refused while the network is down
    vi.advanceTimersByTime(500);
    expect(s.all).toHaveLength(3);
    expect(delays).toEqual([1, 2]);
    s.last().open();
    expect((s.last().of('hello')[0] as Hello).resume).toBe('token-p1');
    s.last().serve('welcome', welcome('p1', { resumed: true }));
    expect(statuses.at(-1)).toBe('connected');
    // The attempt count starts again after a welcome.
    s.last().drop();
    vi.advanceTimersByTime(250);
    expect(delays).toEqual([1, 2, 1]);
  });

  it('does not reconnect after bye (the room closed) and forgets the token; slow resumes', () => {
    const { s, storage, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    s.last().serve('bye', { reason: 'slow' });
    s.last().drop(1000);
    vi.advanceTimersByTime(1000);
    expect(s.all).toHaveLength(2);
    s.last().open();
    s.last().serve('welcome', welcome('p1', { resumed: true }));
    s.last().serve('bye', { reason: 'the consultation is no longer live (reporting)' });
    s.last().drop(1000);
    vi.advanceTimersByTime(10_000);
    expect(s.all).toHaveLength(2);
    expect(client.status).toBe('ended');
    expect(storage.getItem(resumeKey(7))).toBeNull();
  });

  it('stamps ops with an increasing sent time and numbers requests', () => {
    const { s, client } = setup({ now: () => 5000 });
    expect(client.sendOp({ kind: 'pointer', pointer: { x: 0.5, y: 0.5, visible: true } })).toBe(0); // offline
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    const a = client.sendOp({ kind: 'window', window: { center: 40, width: 400 } });
    const b = client.sendOp({ kind: 'window', window: { center: 50, width: 400 } });
    expect(b).toBeGreaterThan(a);
    const ops = s.last().sent.filter((m) => m.type === 'op');
    expect(ops.map((m) => m.id)).toEqual([a, b]);
    const sent = s.last().of('op').map((o) => o.sent!);
    expect(sent[1]).toBeGreaterThan(sent[0]!);
  });

  it('sends control and chat, and follows control.state, chat and participants', () => {
    const { s, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    client.sendControl('give', 'p2');
    client.sendControl('request');
    client.sendChat('请看第 12 层');
    expect(s.last().of('control')).toEqual([{ action: 'give', to: 'p2' }, { action: 'request' }]);
    expect(s.last().of('chat')).toEqual([{ text: '请看第 12 层' }]);
    s.last().serve('control.state', { driver: 'p2', requests: ['p3'] });
    expect(client.control).toEqual({ driver: 'p2', requests: ['p3'] });
    s.last().serve('chat.message', { id: 2, participant: 'p1', name: '韦东平', text: '请看第 12 层', time: '2026-12-07T08:01:00Z' });
    expect(client.chat).toHaveLength(1);
    s.last().serve('participant', { event: 'joined', participant: participant('p3', '罗雪梅') });
    expect(client.participants.has('p3')).toBe(true);
    s.last().serve('participant', { event: 'disconnected', participant: { ...participant('p3', '罗雪梅'), connected: false } });
    expect(client.participants.get('p3')?.connected).toBe(false);
    s.last().serve('participant', { event: 'left', participant: participant('p3', '罗雪梅') });
    expect(client.participants.has('p3')).toBe(false);
    const errors: string[] = [];
    client.on('error', (e) => errors.push(e.code));
    s.last().serve('error', { code: 'not-driver', message: 'not the driver', ref: 3 });
    expect(errors).toEqual(['not-driver']);
  });

  it('tells the room what it muted, and again to a room that forgot (a new participant)', async () => {
    const { s, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    expect(s.last().of('media')).toEqual([]); // nothing muted, and the room knows
    await client.setSending('audio', false);
    await client.setSending('video', false);
    await client.setSending('audio', true);
    expect(s.last().of('media')).toEqual([{ muted: ['microphone'] }, { muted: ['microphone', 'camera'] }, { muted: ['camera'] }]);
    // A resume that kept it says nothing; a welcome that lost it is told again.
    s.last().serve('welcome', welcome('p1', { resumed: true, participants: [{ ...participant('p1', '韦东平'), muted: ['camera'] }] }));
    expect(s.last().of('media')).toHaveLength(3);
    s.last().serve('welcome', welcome('p9'));
    expect(s.last().of('media')).toEqual([{ muted: ['microphone'] }, { muted: ['microphone', 'camera'] }, { muted: ['camera'] }, { muted: ['camera'] }]);
  });

  it('tells the room its uplink state with what it muted, and again to a room that forgot', async () => {
    const { s, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    await client.setCameraStep(1, 'reduced');
    await client.setCameraStep(2, 'audio-only');
    await client.setCameraStep(2, 'audio-only');
    expect(s.last().of('media')).toEqual([
      { muted: [], uplink: 'reduced' },
      { muted: [], uplink: 'audio-only' },
    ]);
    s.last().serve('welcome', welcome('p1', { resumed: true, participants: [{ ...participant('p1', '韦东平'), uplink: 'audio-only' }] }));
    expect(s.last().of('media')).toHaveLength(2);
    s.last().serve('welcome', welcome('p9'));
    await client.setCameraStep(0, 'full');
    // Full is said by leaving the field out, as an older client does.
    expect(s.last().of('media').slice(2)).toEqual([{ muted: [], uplink: 'audio-only' }, { muted: [] }]);
  });

  it('pings, and takes a silent socket for dead', () => {
    let now = 0;
    const { s, client } = setup({ now: () => now, pingEvery: 10_000, silentFor: 30_000 });
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    now = 10_000;
    vi.advanceTimersByTime(5000);
    expect(s.last().of('ping')).toHaveLength(1);
    now = 10_050;
    s.last().serve('pong', undefined);
    expect(client.rtt).toBe(50);
    now = 45_000;
    vi.advanceTimersByTime(5000);
    expect(s.all).toHaveLength(2);
    expect(s.all[0]!.closed).toBe(true);
  });

  it('leaves for good: leave sent, token forgotten, no reconnect', () => {
    const { s, storage, client } = setup();
    client.join();
    s.last().open();
    s.last().serve('welcome', welcome('p1'));
    client.leave();
    expect(s.all[0]!.sent.at(-1)?.type).toBe('leave');
    expect(storage.getItem(resumeKey(7))).toBeNull();
    vi.advanceTimersByTime(10_000);
    expect(s.all).toHaveLength(1);
    expect(client.status).toBe('ended');
  });
});

describe('cameraEncodings', () => {
  it('asks for as many simulcast layers as Chromium sends at the capture size', () => {
    expect(cameraEncodings(1280, 720).map((e) => e.rid)).toEqual(['q', 'h', 'f']);
    expect(cameraEncodings(640, 480).map((e) => e.rid)).toEqual(['q', 'f']);
    expect(cameraEncodings(320, 240)).toEqual([{ maxBitrate: 1_200_000 }]);
  });
});
