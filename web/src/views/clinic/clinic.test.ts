import { describe, expect, it, vi, beforeEach } from 'vitest';
import { createPinia, setActivePinia } from 'pinia';
import { ageAt, personName, qidoQuery, studyRow, formatDate } from './studies';
import { phaseOf, validateDraft, type RequestDraft } from './requests';
import { useUploadStore } from '@/upload/store';

describe('studies', () => {
  it('reads a QIDO-RS study result', () => {
    const row = studyRow({
      '0020000D': { vr: 'UI', Value: ['1.2.3'] },
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Wang^Fang', Ideographic: '王^芳' }] },
      '00100020': { vr: 'LO', Value: ['P001'] },
      '00100030': { vr: 'DA', Value: ['19800615'] },
      '00100040': { vr: 'CS', Value: ['F'] },
      '00080020': { vr: 'DA', Value: ['20260301'] },
      '00080061': { vr: 'CS', Value: ['CT', 'SR'] },
      '00081030': { vr: 'LO', Value: ['胸部平扫'] },
      '00201206': { vr: 'IS', Value: [2] },
      '00201208': { vr: 'IS', Value: [301] },
    });
    expect(row).toMatchObject({ uid: '1.2.3', patientName: '王芳 (Wang Fang)', patientNameRaw: '王芳', patientId: 'P001', sex: 'F', age: 45, modalities: ['CT', 'SR'], series: 2, instances: 301 });
    expect(studyRow({}).patientName).toBe('');
  });

  it('shows names and dates', () => {
    expect(personName({ Alphabetic: 'Li^Lei' })).toBe('Li Lei');
    expect(personName('LI^LEI')).toBe('LI LEI');
    expect(ageAt('20000301', '20260228')).toBe(25);
    expect(ageAt('', '20260228')).toBeNull();
    expect(formatDate('20260301')).toBe('2026-03-01');
  });

  it('turns the search into QIDO-RS keys', () => {
    expect(qidoQuery({ name: ' 王 ' })).toEqual({ PatientName: '*王*' });
    expect(qidoQuery({ patientId: 'P00' })).toEqual({ PatientID: 'P00*' });
    expect(qidoQuery({ from: '2026-01-01', to: '2026-01-31' })).toEqual({ StudyDate: '20260101-20260131' });
    expect(qidoQuery({ from: '2026-01-01' })).toEqual({ StudyDate: '20260101-' });
    expect(qidoQuery({ to: '2026-01-31' })).toEqual({ StudyDate: '-20260131' });
    expect(qidoQuery({ from: '2026-01-01', to: '2026-01-01' })).toEqual({ StudyDate: '20260101' });
  });
});

describe('requests', () => {
  const ok: RequestDraft = {
    studyUID: '1.2', patientName: '王芳', clinicalQuestion: 'cough', purpose: '明确诊断', urgency: 'routine', hospitalId: 1, specialty: '', doctorId: null,
    wishedAt: '', consentConfirmed: true, consentFile: new File(['x'], 'c.jpg', { type: 'image/jpeg' }), recordingConsent: false,
  };

  it('validates the form with a message per field', () => {
    expect(validateDraft(ok)).toEqual({});
    const e = validateDraft({ ...ok, studyUID: '', patientName: ' ', clinicalQuestion: '', urgency: '', hospitalId: null, consentConfirmed: false, consentFile: null });
    expect(e).toEqual({
      studyUID: 'request.validation.study', patientName: 'request.validation.patientName', clinicalQuestion: 'request.validation.question',
      urgency: 'request.validation.urgency', hospitalId: 'request.validation.hospital', consentConfirmed: 'request.validation.consent',
      consentFile: 'request.validation.consentFile',
    });
    expect(validateDraft({ ...ok, wishedAt: '2020-01-01T10:00' }).wishedAt).toBe('request.validation.wishedAtPast');
    expect(validateDraft({ ...ok, clinicalQuestion: 'x'.repeat(4001) }).clinicalQuestion).toBe('request.validation.questionLong');
  });

  it('groups states as the clinic reads them', () => {
    expect(phaseOf('accepted')).toBe('requested');
    expect(phaseOf('signed')).toBe('done');
    expect(phaseOf('closed')).toBe('done');
    expect(phaseOf('reporting')).toBe('reporting');
  });
});

describe('upload store', () => {
  beforeEach(() => {
    setActivePinia(createPinia());
    vi.stubGlobal('fetch', vi.fn(async () => new Response('{}', { status: 200, headers: { 'Content-Type': 'application/json' } })));
  });

  it('pages the list and filters it', async () => {
    const store = useUploadStore();
    const files = Array.from({ length: 120 }, (_, i) => ({ file: new File([], `f${i}`), path: `d/f${i}` }));
    await store.addPicked(files);
    await new Promise((r) => setTimeout(r, 50));
    const all = store.page('all', 0, 50);
    expect(all.total).toBe(120);
    expect(all.rows).toHaveLength(50);
    // Empty files fail in the browser, with their reason.
    expect(store.page('failed', 2, 50).rows).toHaveLength(20);
    expect(store.page('failed', 0, 50).rows[0]!.reason?.key).toBe('upload.reason.empty');
    expect(store.stats?.finished).toBe(true);
  });
});
