import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api, setCSRFToken } from '@/api/client';
import { ApiError } from '@/api/errors';
import type { components } from '@/api/schema';

export type Principal = components['schemas']['Principal'];
export type Institution = components['schemas']['Institution'];
export type Role = components['schemas']['Role'];
type Session = components['schemas']['Session'];

/** The screen each role lands on, in the order a user with several roles is sent. */
const HOME_BY_ROLE: [Role, string][] = [
  ['doctor', 'doctor-worklist'],
  ['clinic', 'clinic-upload'],
  ['admin', 'admin'],
];

/**
 * useAuthStore holds who is signed in (GET /api/session), the session's CSRF token (handed to
 * the API client), and the caller's institution for the header.
 */
export const useAuthStore = defineStore('auth', () => {
  const user = ref<Principal | null>(null);
  const institution = ref<Institution | null>(null);
  /** The session was asked for once (the router waits for it before the first screen). */
  const loaded = ref(false);

  const signedIn = computed(() => user.value !== null);
  const mustChangePassword = computed(() => user.value?.mustChangePassword === true);
  const roles = computed<Role[]>(() => user.value?.roles ?? []);
  const homeRoute = computed(() => HOME_BY_ROLE.find(([role]) => roles.value.includes(role))?.[1] ?? 'no-role');

  function hasRole(role: Role): boolean {
    return roles.value.includes(role);
  }

  function take(session: Session): void {
    user.value = session.user;
    setCSRFToken(session.csrfToken ?? '');
    void loadInstitution();
  }

  async function loadInstitution(): Promise<void> {
    const id = user.value?.institutionId;
    if (!id || user.value?.mustChangePassword) {
      institution.value = null;
      return;
    }
    try {
      const { data } = await api.GET('/api/institutions/{iid}', { params: { path: { iid: id } } });
      institution.value = data ?? null;
    } catch {
      // The header shows the institution's code instead.
      institution.value = null;
    }
  }

  /** load asks the server who this browser is signed in as; a 401 means nobody. */
  async function load(): Promise<void> {
    try {
      const { data } = await api.GET('/api/session');
      if (data) take(data);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      forget();
    } finally {
      loaded.value = true;
    }
  }

  async function signIn(username: string, password: string): Promise<Principal> {
    const { data } = await api.POST('/api/login', { body: { username, password } });
    if (!data) throw new Error('empty sign-in answer');
    take(data);
    loaded.value = true;
    return data.user;
  }

  async function signOut(): Promise<void> {
    try {
      await api.POST('/api/logout');
    } catch (err) {
      // Already signed out (session expired): the result is the same.
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
    } finally {
      forget();
    }
  }

  async function changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await api.POST('/api/session/password', { body: { currentPassword, newPassword } });
    if (user.value) {
      user.value = { ...user.value, mustChangePassword: false };
      void loadInstitution();
    }
  }

  /** forget drops the signed-in state (signed out, or the server said the session ended). */
  function forget(): void {
    user.value = null;
    institution.value = null;
    setCSRFToken('');
  }

  return { user, institution, loaded, signedIn, mustChangePassword, roles, homeRoute, hasRole, load, signIn, signOut, changePassword, forget };
});
