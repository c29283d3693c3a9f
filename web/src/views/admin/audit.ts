// The audit page's pure parts: the search form as the API's query, China time both ways, the
// export's address and the head it answers with.
import type { components, paths } from '@/api/schema';

export type AuditEntry = components['schemas']['AuditEntry'];
export type AuditHead = components['schemas']['AuditHead'];
export type AuditQuery = NonNullable<paths['/api/audit']['get']['parameters']['query']>;
export type ExportFormat = 'csv' | 'json';

/** The action families an admin looks for most; a prefix ending in "." matches every action under it. */
export const ACTION_PREFIXES = ['login.', 'user.', 'token.', 'institution.', 'study.', 'consultation.', 'report.', 'live.', 'sessionlog.', 'audit.'] as const;

/** AuditForm is the search form; times are China wall-clock "YYYY-MM-DD HH:mm:ss" (the picker's value-format). */
export interface AuditForm {
  actor: string;
  patient: string;
  action: string;
  institution: string;
  range: [string, string] | null;
}

export const PICKER_FORMAT = 'YYYY-MM-DD HH:mm:ss';

export function emptyForm(): AuditForm {
  return { actor: '', patient: '', action: '', institution: '', range: null };
}

/** chinaISO turns the picker's China wall-clock "YYYY-MM-DD HH:mm:ss" into RFC 3339 at +08:00. */
export function chinaISO(wall: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})(:\d{2})?$/.exec(wall.trim());
  if (!m) throw new Error(`not a China wall-clock time: ${wall}`);
  return `${m[1]}T${m[2]}${m[3] ?? ':00'}+08:00`;
}

/** chinaWall is a moment as the picker shows it in China time, "YYYY-MM-DD HH:mm:ss". */
export function chinaWall(d: Date): string {
  return new Date(d.getTime() + 8 * 3600_000).toISOString().slice(0, 19).replace('T', ' ');
}

/** auditQuery is the form as GET /api/audit's query: blank fields left out, text trimmed. */
export function auditQuery(form: AuditForm, before?: number, limit?: number): AuditQuery {
  const q: AuditQuery = {};
  const actor = form.actor.trim();
  const patient = form.patient.trim();
  const action = form.action.trim();
  const institution = form.institution.trim();
  if (actor) q.actor = actor;
  if (patient) q.patient = patient;
  if (action) q.action = action;
  if (institution) q.institution = institution;
  if (form.range) {
    q.from = chinaISO(form.range[0]);
    q.to = chinaISO(form.range[1]);
  }
  if (before !== undefined) q.before = before;
  if (limit !== undefined) q.limit = limit;
  return q;
}

/** exportHref is GET /api/audit/export for the form's time range (the other filters do not apply to an export). */
export function exportHref(range: AuditForm['range'], format: ExportFormat): string {
  const p = new URLSearchParams();
  if (range) {
    p.set('from', chinaISO(range[0]));
    p.set('to', chinaISO(range[1]));
  }
  p.set('format', format);
  return `/api/audit/export?${p.toString()}`;
}

/** exportHead is the chain head an export answered with (its Audit-Head-Seq and Audit-Head-Hash headers). */
export function exportHead(headers: Headers): AuditHead | null {
  const seq = Number(headers.get('Audit-Head-Seq'));
  const hash = headers.get('Audit-Head-Hash');
  return Number.isInteger(seq) && seq >= 0 && hash ? { seq, hash } : null;
}

/** auditTime is an entry's time to the second, in China time whatever the device says. */
export function auditTime(iso: string, locale: string): string {
  return new Intl.DateTimeFormat(locale, {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).format(new Date(iso));
}

/** outcomeTag is the Element Plus tag type of an entry's outcome. */
export function outcomeTag(outcome: string): 'success' | 'danger' | 'warning' | 'info' {
  if (outcome === 'success') return 'success';
  if (outcome === 'failure') return 'danger';
  if (outcome === 'denied') return 'warning';
  return 'info';
}
