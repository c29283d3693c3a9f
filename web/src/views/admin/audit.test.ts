import { describe, expect, it } from 'vitest';
import { auditQuery, auditTime, chinaISO, chinaWall, emptyForm, exportHead, exportHref, outcomeTag } from './audit';

describe('the audit search form', () => {
  it('sends only what was filled in, trimmed', () => {
    expect(auditQuery(emptyForm())).toEqual({});
    const form = { ...emptyForm(), actor: ' wei.dongping ', action: 'live.', patient: '', institution: 'dahua' };
    expect(auditQuery(form)).toEqual({ actor: 'wei.dongping', action: 'live.', institution: 'dahua' });
  });

  it('sends the range as China time and the page cursor', () => {
    const form = { ...emptyForm(), patient: 'LS-0042', range: ['2026-12-01 00:00:00', '2026-12-08 12:30:00'] as [string, string] };
    expect(auditQuery(form, 1234, 50)).toEqual({ patient: 'LS-0042', from: '2026-12-01T00:00:00+08:00', to: '2026-12-08T12:30:00+08:00', before: 1234, limit: 50 });
  });

  it('reads and writes China wall-clock times whatever the device zone', () => {
    expect(chinaISO('2026-12-08 09:05')).toBe('2026-12-08T09:05:00+08:00');
    expect(chinaISO('2026-12-08T09:05:07')).toBe('2026-12-08T09:05:07+08:00');
    expect(() => chinaISO('8 Dec')).toThrow();
    expect(chinaWall(new Date('2026-12-07T16:30:00Z'))).toBe('2026-12-08 00:30:00');
    expect(auditTime('2026-12-07T16:30:05.123Z', 'zh-CN')).toBe('2026/12/08 00:30:05');
  });

  it('exports the range alone in the chosen format', () => {
    expect(exportHref(null, 'json')).toBe('/api/audit/export?format=json');
    expect(exportHref(['2026-12-01 00:00:00', '2026-12-02 00:00:00'], 'csv')).toBe(
      '/api/audit/export?from=2026-12-01T00%3A00%3A00%2B08%3A00&to=2026-12-02T00%3A00%3A00%2B08%3A00&format=csv');
  });

  it("reads the export's head from its headers", () => {
    expect(exportHead(new Headers({ 'Audit-Head-Seq': '120', 'Audit-Head-Hash': 'cafe' }))).toEqual({ seq: 120, hash: 'cafe' });
    expect(exportHead(new Headers({ 'Audit-Head-Seq': '120' }))).toBeNull();
    expect(exportHead(new Headers({ 'Audit-Head-Seq': 'x', 'Audit-Head-Hash': 'cafe' }))).toBeNull();
  });

  it('colours outcomes', () => {
    expect(['success', 'failure', 'denied', 'other'].map(outcomeTag)).toEqual(['success', 'danger', 'warning', 'info']);
  });
});
