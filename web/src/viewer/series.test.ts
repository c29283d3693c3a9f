import { describe, expect, it } from 'vitest';
import { buildSeries, viewable, type DicomJSON } from './series';
import { overlayOf } from './overlay';

const v = (vr: string, ...Value: unknown[]) => ({ vr, Value });
const us = (uid: string, extra: DicomJSON = {}): DicomJSON => ({
  '00080018': v('UI', uid),
  '00080060': v('CS', 'US'),
  '00200013': v('IS', 1),
  '00280010': v('US', 480),
  '00280011': v('US', 640),
  ...extra,
});

describe('buildSeries', () => {
  it('stacks every frame of a multi-frame clip and takes its frame rate', () => {
    const s = buildSeries('1', '1.1', [
      us('1.1.1', { '00280008': v('IS', 3), '00181063': v('DS', 40) }),
      us('1.1.2', { '00200013': v('IS', 2), '00280008': v('IS', 2), '00180040': v('IS', 30) }),
      { '00080018': v('UI', '1.1.3'), '00080060': v('CS', 'US') }, // no pixels
    ]);
    expect(s.stack.map((e) => `${e.instance}/${e.frame}`)).toEqual(['1.1.1/0', '1.1.1/1', '1.1.1/2', '1.1.2/0', '1.1.2/1']);
    expect(s.stack[2]?.imageId).toMatch(/^wadors:http.*\/dicom-web\/studies\/1\/series\/1\.1\/instances\/1\.1\.1\/frames\/3$/);
    expect(s.fps.get('1.1.1')).toBe(25);
    expect(s.fps.get('1.1.2')).toBe(30);
    expect(s.modality).toBe('US');
  });

  it('orders slices by Instance Number, then along the normal', () => {
    const ct = (uid: string, n: number, z: number): DicomJSON => ({
      ...us(uid, { '00200013': v('IS', n), '00200032': v('DS', 0, 0, z), '00200037': v('DS', 1, 0, 0, 0, 1, 0) }),
    });
    const s = buildSeries('1', '1.2', [ct('a', 2, 0), ct('b', 1, 10), ct('c', 1, -10)]);
    expect(s.stack.map((e) => e.instance)).toEqual(['c', 'b', 'a']);
  });
});

describe('series and overlays', () => {
  it('leaves series without images out of the viewer', () => {
    const s = (modality: string) => ({ uid: modality, modality, description: '', number: 1, instances: 1 });
    expect(viewable([s('CT'), s('SR'), s('KO'), s('PR'), s('US')]).map((x) => x.modality)).toEqual(['CT', 'US']);
  });

  it('reads the corners’ text from DICOM JSON', () => {
    const o = overlayOf({
      '00100010': v('PN', { Alphabetic: 'Qin^Guilan', Ideographic: '覃^桂兰' }),
      '00100020': v('LO', 'LS-0108'),
      '00100030': v('DA', '19610305'),
      '00100040': v('CS', 'F'),
      '00080020': v('DA', '20261201'),
      '00081030': v('LO', '胸部 CT 平扫'),
      '00200011': v('IS', 2),
      '00200013': v('IS', 17),
      '00201041': v('DS', -157.5),
      '00200032': v('DS', -175, -175, -157.5),
    });
    expect(o).toMatchObject({
      patientName: '覃桂兰',
      patientId: 'LS-0108',
      sex: 'F',
      age: 65,
      studyDate: '2026-12-01',
      studyDescription: '胸部 CT 平扫',
      seriesNumber: '2',
      instanceNumber: '17',
      frames: 1,
      sliceLocation: '-157.5',
      position: '-175.0, -175.0, -157.5',
    });
    expect(overlayOf({ '00101010': v('AS', '056Y') }).age).toBe(56);
  });
});
