import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createPinia, setActivePinia } from 'pinia';
import { useRoomStore } from './room';
import { memoryStorage, participant, sockets, welcome } from '@/live/fakesocket';

function joined(driver = 'p1') {
  const s = sockets();
  const room = useRoomStore();
  room.join(7, {}, { url: 'ws://test/live', socket: s.make, peerConnection: null, storage: memoryStorage(), backoff: () => 10 });
  s.last().open();
  s.last().serve('welcome', welcome('p1', { control: { driver, requests: [] } }));
  return { s, room };
}

describe('room store', () => {
  beforeEach(() => {
    setActivePinia(createPinia());
    vi.useFakeTimers();
  });

  it('mirrors the welcome: me, seq, participants, the driver', () => {
    const { room } = joined();
    expect(room.status).toBe('connected');
    expect(room.me).toBe('p1');
    expect(room.seq).toBe(3);
    expect(room.participantList.map((p) => p.name)).toEqual(['韦东平', '蓝秀英']);
    expect(room.driving).toBe(true);
    expect(room.nameOf('p2')).toBe('蓝秀英');
  });

  it("shows the driver's op at once, then the room's when applied", () => {
    const { s, room } = joined();
    room.viewerOp({ kind: 'window', window: { center: 40, width: 400 } });
    expect(room.shownView.window).toEqual({ center: 40, width: 400 });
    expect(room.view.window).toEqual({ center: 0, width: 0 });
    const [op] = s.last().of('op');
    s.last().serve('op.applied', { seq: 4, by: 'p1', op: op!, time: '2026-12-07T08:00:00Z' });
    expect(room.view.window).toEqual({ center: 40, width: 400 });
    expect(room.shownView.window).toEqual({ center: 40, width: 400 });
    expect(room.seq).toBe(4);
  });

  it("keeps a follower's view ops to itself (readonly viewer) but sends its pointer and annotations", () => {
    const { s, room } = joined('p2');
    expect(room.driving).toBe(false);
    room.viewerOp({ kind: 'window', window: { center: 40, width: 400 } });
    room.viewerOp({ kind: 'pointer', pointer: { x: 0.2, y: 0.3, visible: true } });
    expect(s.last().of('op').map((o) => o.kind)).toEqual(['pointer']);
  });

  it('forgets a refused op', () => {
    const { s, room } = joined();
    room.viewerOp({ kind: 'window', window: { center: 40, width: 400 } });
    const id = s.last().sent.find((m) => m.type === 'op')!.id!;
    s.last().serve('error', { code: 'not-driver', message: 'no', ref: id });
    expect(room.shownView.window).toEqual({ center: 0, width: 0 });
    expect(room.errors.map((e) => e.code)).toEqual(['not-driver']);
  });

  it('an unfollowed screen is not moved; following again jumps to the room', () => {
    const { s, room } = joined('p2');
    room.setFollow(false);
    room.viewerOp({ kind: 'image', image: { frame: 5 } }); // its own browsing, not sent
    expect(s.last().of('op')).toHaveLength(0);
    s.last().serve('op.applied', { seq: 4, by: 'p2', op: { kind: 'window', window: { center: 1, width: 2 } }, time: '2026-12-07T08:00:00Z' });
    expect(room.shownView.window).toEqual({ center: 0, width: 0 });
    expect(room.shownView.image.frame).toBe(5);
    room.setFollow(true);
    expect(room.shownView.window).toEqual({ center: 1, width: 2 });
    expect(room.shownView.image.frame).toBe(0);
  });

  it('keeps the chat and the control state', () => {
    const { s, room } = joined();
    expect(room.sendChat('  ')).toBe(false);
    expect(room.sendChat('请看右肺上叶')).toBe(true);
    s.last().serve('chat.message', { id: 1, participant: 'p1', name: '韦东平', text: '请看右肺上叶', time: '2026-12-07T08:00:00Z' });
    expect(room.chat.map((c) => c.text)).toEqual(['请看右肺上叶']);
    s.last().serve('control.state', { driver: 'p1', requests: ['p2'] });
    expect(room.control.requests).toEqual(['p2']);
    room.sendControl('give', 'p2');
    expect(s.last().of('control')).toEqual([{ action: 'give', to: 'p2' }]);
    s.last().serve('control.state', { driver: 'p2', requests: [] });
    expect(room.driving).toBe(false);
  });

  it("takes the server's quality level, lost while away", () => {
    const { s, room } = joined();
    expect(room.levelOf('p2')).toBe('');
    s.last().serve('participant', { event: 'updated', participant: { ...participant('p2', '蓝秀英', 'clinic'), quality: 'weak' } });
    expect(room.levelOf('p2')).toBe('weak');
    s.last().serve('participant', { event: 'disconnected', participant: { ...participant('p2', '蓝秀英', 'clinic'), connected: false } });
    expect(room.levelOf('p2')).toBe('lost');
  });

  it('shows reconnecting while the socket is gone and the snapshot after', () => {
    const { s, room } = joined();
    s.last().drop();
    expect(room.status).toBe('reconnecting');
    vi.advanceTimersByTime(10);
    s.last().open();
    const state = { ...room.view, window: { center: 7, width: 70 } };
    s.last().serve('welcome', welcome('p1', { resumed: true, snapshot: { seq: 12, state } }));
    expect(room.status).toBe('connected');
    expect(room.seq).toBe(12);
    expect(room.shownView.window).toEqual({ center: 7, width: 70 });
  });
});
