import { createRouter, createWebHistory, type RouteLocationRaw, type Router, type RouteRecordRaw, type RouterHistory } from 'vue-router';
import type { Pinia } from 'pinia';
import { setUnauthorizedHandler } from '@/api/client';
import { useAuthStore, type Role } from '@/stores/auth';
import SignIn from '@/views/auth/SignIn.vue';
import { safeNext } from '@/next';

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable without signing in. */
    public?: boolean;
    /** Only users with this role see the screen. */
    role?: Role;
    /** i18n key of the screen's title (document title and placeholders). */
    title?: string;
  }
}

// The sign-in screen is in the first bundle (it is the first thing most people load); every
// other screen is its own chunk, loaded when first opened.
export const routes: RouteRecordRaw[] = [
  { path: '/sign-in', name: 'sign-in', component: SignIn, meta: { public: true, title: 'auth.signIn.title' } },
  {
    path: '/',
    component: () => import('@/components/AppShell.vue'),
    children: [
      { path: '', name: 'home', component: { render: () => null } },
      { path: 'password', name: 'password', component: () => import('@/views/auth/ChangePassword.vue'), meta: { title: 'auth.password.title' } },
      { path: 'clinic/upload', name: 'clinic-upload', component: () => import('@/views/clinic/UploadView.vue'), meta: { role: 'clinic', title: 'screens.upload' } },
      { path: 'clinic/studies', name: 'clinic-studies', component: () => import('@/views/clinic/StudiesView.vue'), meta: { role: 'clinic', title: 'screens.studies' } },
      { path: 'clinic/requests', name: 'clinic-requests', component: () => import('@/views/clinic/RequestsView.vue'), meta: { role: 'clinic', title: 'screens.requests' } },
      { path: 'doctor/worklist', name: 'doctor-worklist', component: () => import('@/views/doctor/WorklistView.vue'), meta: { role: 'doctor', title: 'screens.worklist' } },
      { path: 'doctor/consultations/:id(\\d+)', name: 'doctor-consultation', component: () => import('@/views/doctor/ConsultationView.vue'), meta: { role: 'doctor', title: 'doctor.consultation.title' } },
      { path: 'admin', name: 'admin', redirect: { name: 'admin-dashboard' }, meta: { role: 'admin', title: 'screens.admin' } },
      { path: 'admin/dashboard', name: 'admin-dashboard', component: () => import('@/views/admin/DashboardView.vue'), meta: { role: 'admin', title: 'admin.dashboard.title' } },
      { path: 'admin/institutions', name: 'admin-institutions', component: () => import('@/views/admin/InstitutionsView.vue'), meta: { role: 'admin', title: 'admin.institutions.title' } },
      { path: 'admin/people', name: 'admin-people', component: () => import('@/views/admin/PeopleView.vue'), meta: { role: 'admin', title: 'admin.people.title' } },
      { path: 'admin/session-logs', name: 'admin-session-logs', component: () => import('@/views/admin/SessionLogsView.vue'), meta: { role: 'admin', title: 'admin.sessions.title' } },
      { path: 'admin/session-logs/:id(\\d+)', name: 'admin-session-log', component: () => import('@/views/admin/SessionLogView.vue'), meta: { role: 'admin', title: 'admin.sessions.title' } },
      { path: 'admin/audit', name: 'admin-audit', component: () => import('@/views/admin/AuditView.vue'), meta: { role: 'admin', title: 'admin.audit.title' } },
      { path: 'no-role', name: 'no-role', component: () => import('@/views/NotFound.vue') },
    ],
  },
  // The live room fills the screen (no app shell); every role joins it, the server decides who may.
  { path: '/consultations/:id(\\d+)/live', name: 'room', component: () => import('@/views/room/RoomView.vue'), meta: { title: 'room.title' } },
  { path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('@/views/NotFound.vue'), meta: { public: true, title: 'notFound.title' } },
];

export function createAppRouter(pinia: Pinia, history: RouterHistory = createWebHistory()): Router {
  const router = createRouter({ history, routes });

  router.beforeEach(async (to): Promise<boolean | RouteLocationRaw> => {
    const auth = useAuthStore(pinia);
    if (!auth.loaded) await auth.load();
    if (to.name === 'sign-in') {
      return auth.signedIn ? (safeNext(to.query.next) ?? { name: auth.homeRoute }) : true;
    }
    if (to.meta.public) return true;
    if (!auth.signedIn) return { name: 'sign-in', query: { next: to.fullPath } };
    if (auth.mustChangePassword && to.name !== 'password') {
      return { name: 'password', query: to.name === 'home' ? {} : { next: to.fullPath } };
    }
    if (to.name === 'home') return { name: auth.homeRoute };
    if (to.meta.role && !auth.hasRole(to.meta.role)) return { name: auth.homeRoute };
    return true;
  });

  // A request that answers 401 outside sign-in: the session ended (idle, signed out elsewhere).
  setUnauthorizedHandler(() => {
    const auth = useAuthStore(pinia);
    auth.forget();
    const here = router.currentRoute.value;
    if (here.name !== 'sign-in') {
      void router.push({ name: 'sign-in', query: { next: here.fullPath, expired: '1' } });
    }
  });

  return router;
}
