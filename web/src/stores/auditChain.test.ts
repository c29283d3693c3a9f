import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createPinia, setActivePinia } from 'pinia';
import { brokenAt, nextChainState, useAuditChainStore, type AuditVerify, type ChainState } from './auditChain';

const head = { seq: 42, hash: 'ab'.repeat(32) };
const holds: AuditVerify = { holds: true, entries: 42, headHash: head.hash, head };
const broken: AuditVerify = { holds: false, entries: 42, headHash: head.hash, head, brokenAt: 7, reason: 'entry 7: hash does not match its contents' };
const at = new Date('2026-12-08T02:00:00Z');

describe('the audit chain state', () => {
  it('goes from unknown to holding or broken with each answer', () => {
    let s: ChainState = { kind: 'unknown' };
    expect(brokenAt(s)).toBeNull();
    s = nextChainState(s, { verify: holds, at });
    expect(s).toEqual({ kind: 'holds', head, checkedAt: at });
    expect(brokenAt(s)).toBeNull();
    s = nextChainState(s, { verify: broken, at });
    expect(s).toMatchObject({ kind: 'broken', brokenAt: 7, reason: broken.reason });
    expect(brokenAt(s)).toBe(7);
    // A restored backup verifies again: the alarm goes.
    s = nextChainState(s, { verify: holds, at });
    expect(brokenAt(s)).toBeNull();
  });

  it('keeps a broken chain red when a later check fails to reach the server', () => {
    let s = nextChainState({ kind: 'unknown' }, { verify: broken, at });
    s = nextChainState(s, { error: new Error('offline'), at });
    s = nextChainState(s, { error: new Error('offline again'), at });
    expect(s.kind).toBe('unreachable');
    expect(s.kind === 'unreachable' && s.known.kind).toBe('broken');
    expect(brokenAt(s)).toBe(7);
  });

  it('raises no alarm when the first check fails', () => {
    const s = nextChainState({ kind: 'unknown' }, { error: new Error('500'), at });
    expect(brokenAt(s)).toBeNull();
  });

  it('names the entry after the head when a broken answer lacks brokenAt', () => {
    expect(brokenAt(nextChainState({ kind: 'unknown' }, { verify: { ...broken, brokenAt: undefined }, at }))).toBe(43);
  });
});

describe('useAuditChainStore', () => {
  let answers: AuditVerify[];
  let calls: number;
  beforeEach(() => {
    setActivePinia(createPinia());
    vi.useFakeTimers();
    answers = [holds, broken];
    calls = 0;
    vi.stubGlobal('fetch', async (req: Request) => {
      expect(new URL(req.url).pathname).toBe('/api/audit/verify');
      const body = answers[Math.min(calls++, answers.length - 1)];
      return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
    });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('checks at once and then every period, until stopped', async () => {
    const chain = useAuditChainStore();
    const stop = chain.watch(60_000);
    await vi.waitFor(() => expect(chain.state.kind).toBe('holds'));
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    await vi.waitFor(() => expect(chain.broken).toBe(7));
    expect(calls).toBe(2);
    stop();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(calls).toBe(2);
  });

  it('keeps the alarm when the server stops answering', async () => {
    const chain = useAuditChainStore();
    answers = [broken];
    await chain.check();
    vi.stubGlobal('fetch', async () => new Response('{"title":"down"}', { status: 503, headers: { 'Content-Type': 'application/problem+json' } }));
    await chain.check();
    expect(chain.state.kind).toBe('unreachable');
    expect(chain.broken).toBe(7);
  });
});
