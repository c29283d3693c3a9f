// The four corners' text: who, what study, where in the series. DICOM JSON in, strings out.
import { ageAt } from './math';
import { num, nums, str, tag, type DicomJSON } from './series';

export interface Overlay {
  patientName: string;
  patientId: string;
  /** M, F, O or '' */
  sex: string;
  age?: number;
  studyDate: string;
  studyDescription: string;
  seriesNumber: string;
  seriesDescription: string;
  instanceNumber: string;
  frames: number;
  sliceLocation: string;
  position: string;
}

const date = (d: string): string => (/^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d);

/** Patient's Age (AS, e.g. 056Y) when stored in years, else the age at the study date. */
function age(m: DicomJSON | undefined): number | undefined {
  const as = str(m, tag.PatientAge);
  const y = /^(\d{3})Y$/.exec(as);
  if (y) return Number(y[1]);
  return ageAt(str(m, tag.PatientBirthDate), str(m, tag.StudyDate));
}

/** Family^Given as people write it: 覃桂兰 with no space, Qin Guilan with one. */
function personName(pn: string): string {
  const cjk = /[\u3400-\u9fff]/.test(pn);
  return pn.replace(/\^+/g, cjk ? '' : ' ').trim();
}

export function overlayOf(m: DicomJSON | undefined): Overlay {
  const ipp = nums(m, tag.ImagePositionPatient);
  const loc = num(m, tag.SliceLocation);
  const sex = str(m, tag.PatientSex);
  return {
    patientName: personName(str(m, tag.PatientName)),
    patientId: str(m, tag.PatientID),
    sex: ['M', 'F', 'O'].includes(sex) ? sex : '',
    age: age(m),
    studyDate: date(str(m, tag.StudyDate)),
    studyDescription: str(m, tag.StudyDescription),
    seriesNumber: str(m, tag.SeriesNumber),
    seriesDescription: str(m, tag.SeriesDescription),
    instanceNumber: str(m, tag.InstanceNumber),
    frames: num(m, tag.NumberOfFrames) ?? 1,
    sliceLocation: loc === undefined ? '' : loc.toFixed(1),
    position: ipp.length === 3 ? ipp.map((v) => v.toFixed(1)).join(', ') : '',
  };
}
