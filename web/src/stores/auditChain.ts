import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api } from '@/api/client';
import type { components } from '@/api/schema';

export type AuditVerify = components['schemas']['AuditVerify'];
export type AuditHead = components['schemas']['AuditHead'];

/**
 * ChainState is what the console knows of the audit chain: not checked yet, holding, or
 * broken at an entry; `unreachable` when the last check failed (network, server error) and
 * keeps what was known before, so a dropped link never clears a red alarm.
 */
export type ChainState =
  | { kind: 'unknown' }
  | { kind: 'holds'; head: AuditHead; checkedAt: Date }
  | { kind: 'broken'; brokenAt: number; reason: string; head: AuditHead; checkedAt: Date }
  | { kind: 'unreachable'; known: Exclude<ChainState, { kind: 'unreachable' }>; error: unknown; checkedAt: Date };

export type CheckOutcome = { verify: AuditVerify; at: Date } | { error: unknown; at: Date };

/** nextChainState folds one verification's outcome into the state. */
export function nextChainState(prev: ChainState, outcome: CheckOutcome): ChainState {
  if ('error' in outcome) {
    const known = prev.kind === 'unreachable' ? prev.known : prev;
    return { kind: 'unreachable', known, error: outcome.error, checkedAt: outcome.at };
  }
  const v = outcome.verify;
  if (v.holds) return { kind: 'holds', head: v.head, checkedAt: outcome.at };
  // A broken chain without brokenAt would be a server bug; the head's next entry is the best guess.
  return { kind: 'broken', brokenAt: v.brokenAt ?? v.head.seq + 1, reason: v.reason ?? '', head: v.head, checkedAt: outcome.at };
}

/** brokenAt is the first entry that does not verify, as far as is known; null when none is known. */
export function brokenAt(s: ChainState): number | null {
  const known = s.kind === 'unreachable' ? s.known : s;
  return known.kind === 'broken' ? known.brokenAt : null;
}

/** How often the console re-verifies the chain for an admin (each check walks the whole chain). */
export const VERIFY_EVERY_MS = 5 * 60_000;

/**
 * useAuditChainStore keeps the audit chain's verification (GET /api/audit/verify) for the
 * admin console: the alarm across every admin page and the audit page's card read the same
 * state, so re-verifying on one shows on the other.
 */
export const useAuditChainStore = defineStore('auditChain', () => {
  const state = ref<ChainState>({ kind: 'unknown' });
  const checking = ref(false);
  const broken = computed(() => brokenAt(state.value));

  async function check(): Promise<void> {
    checking.value = true;
    try {
      const { data } = await api.GET('/api/audit/verify');
      if (data) state.value = nextChainState(state.value, { verify: data, at: new Date() });
    } catch (error) {
      state.value = nextChainState(state.value, { error, at: new Date() });
    } finally {
      checking.value = false;
    }
  }

  /** watch checks now and every `every` ms until the returned stop is called. */
  function watch(every = VERIFY_EVERY_MS): () => void {
    void check();
    const timer = setInterval(() => void check(), every);
    return () => clearInterval(timer);
  }

  return { state, checking, broken, check, watch };
});
