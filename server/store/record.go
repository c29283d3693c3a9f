package store

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sanping/sanping/server/dcm"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// record is what goes into the index for one instance.
type record struct {
	path                                        string // relative to the data directory
	sha                                         string
	size                                        int64
	studyUID, seriesUID, sopUID, sopClass, ts   string
	patientID, issuer, patientName, birth, sex  string
	nameA, nameI, nameP                         string
	studyDate, studyTime, accession, studyID    string
	studyDesc, referring                        string
	modality, seriesDesc, seriesDate, seriesTim string
	bodyPart, ppsDate, ppsTime                  string
	seriesNumber, instanceNumber                sql.NullInt64
	rows, cols, frames, bits                    sql.NullInt64
	metadata, layout                            []byte
	warnings                                    []string
	institutionID                               int64 // owner of a study this creates
}

// StoredLayout is what readers need to serve frames and bulk data without parsing.
type StoredLayout struct {
	DatasetOffset int64               `json:"d"`
	Deflated      bool                `json:"z,omitempty"`
	Frames        []dcm.Frame         `json:"f,omitempty"`
	Bulk          map[string]dcm.Span `json:"b,omitempty"`
	Encapsulated  bool                `json:"e,omitempty"`
	PixelVR       string              `json:"pv,omitempty"`
	BulkVR        map[string]string   `json:"v,omitempty"` // big endian files: VR of each bulk value
	FrameError    string              `json:"fe,omitempty"`
}

// Dcm gives the layout back in the form dcm's readers take.
func (l *StoredLayout) Dcm() *dcm.Layout {
	return &dcm.Layout{DatasetOffset: l.DatasetOffset, Deflated: l.Deflated, Bulk: l.Bulk}
}

func (s *Store) prepare(sp *spooled) (*record, error) {
	var src io.ReaderAt
	if sp.mem != nil {
		src = bytes.NewReader(*sp.mem)
	} else {
		src = sp.f
	}
	in, err := dcm.Parse(src, sp.size)
	if err != nil {
		if errors.Is(err, dcm.ErrMalformed) {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return nil, err
	}
	return buildRecord(src, sp.size, in)
}

// source is what a spooled instance is read from.
func (sp *spooled) source() io.ReaderAt {
	if sp.mem != nil {
		return bytes.NewReader(*sp.mem)
	}
	return sp.f
}

// rewriteMeta spools sp again with its meta information mended (dcm.RewriteMeta): the data
// set's SOP Instance UID is the truth.
func (s *Store) rewriteMeta(sp *spooled) (*spooled, error) {
	pr, pw := io.Pipe()
	go func() {
		_, err := dcm.RewriteMeta(pw, sp.source(), sp.size)
		pw.CloseWithError(err)
	}()
	sp2, err := s.spool(pr)
	pr.CloseWithError(err) // unblocks the writer if spooling stopped early
	if err != nil {
		return nil, fmt.Errorf("rewriting the meta information: %w", err)
	}
	return sp2, nil
}

func buildRecord(f io.ReaderAt, size int64, in *dcm.Instance) (*record, error) {
	rec := &record{size: size, studyUID: in.StudyInstanceUID, seriesUID: in.SeriesInstanceUID,
		sopUID: in.SOPInstanceUID, sopClass: in.SOPClassUID, ts: in.TransferSyntax}
	rec.patientID = in.String(tag.PatientID)
	rec.issuer = in.String(tag.IssuerOfPatientID)
	rec.patientName = in.String(tag.PatientName)
	pn := dcm.SplitPersonName(rec.patientName)
	rec.nameA, rec.nameI, rec.nameP = strings.ToLower(pn.Alphabetic), strings.ToLower(pn.Ideographic), strings.ToLower(pn.Phonetic)
	rec.birth = in.String(tag.PatientBirthDate)
	rec.sex = in.String(tag.PatientSex)
	rec.studyDate = in.String(tag.StudyDate)
	rec.studyTime = in.String(tag.StudyTime)
	rec.accession = in.String(tag.AccessionNumber)
	rec.studyID = in.String(tag.StudyID)
	rec.studyDesc = in.String(tag.StudyDescription)
	rec.referring = in.String(tag.ReferringPhysicianName)
	rec.modality = in.String(tag.Modality)
	rec.seriesDesc = in.String(tag.SeriesDescription)
	rec.seriesDate = in.String(tag.SeriesDate)
	rec.seriesTim = in.String(tag.SeriesTime)
	rec.bodyPart = in.String(tag.BodyPartExamined)
	rec.ppsDate = in.String(tag.PerformedProcedureStepStartDate)
	rec.ppsTime = in.String(tag.PerformedProcedureStepStartTime)
	rec.seriesNumber = nullInt(in.Int(tag.SeriesNumber))
	rec.instanceNumber = nullInt(in.Int(tag.InstanceNumber))
	rec.rows = nullInt(in.Int(tag.Rows))
	rec.cols = nullInt(in.Int(tag.Columns))
	rec.bits = nullInt(in.Int(tag.BitsAllocated))
	sl := StoredLayout{DatasetOffset: in.Layout.DatasetOffset, Deflated: in.Layout.Deflated, Bulk: in.Layout.Bulk}
	if len(in.Layout.BulkVR) > 0 {
		sl.BulkVR = in.Layout.BulkVR
	}
	if in.Layout.Pixel != nil {
		sl.Encapsulated = in.Layout.Pixel.Encapsulated
		sl.PixelVR = in.Layout.Pixel.VR
		frames, err := in.Frames(f)
		if err != nil {
			// Stored anyway: the original is kept whole and stays retrievable; only frame access is lost.
			sl.FrameError = err.Error()
			rec.warnings = append(rec.warnings, "frames not retrievable: "+err.Error())
		}
		sl.Frames = frames
		rec.frames = sql.NullInt64{Int64: int64(len(frames)), Valid: true}
	}
	var err error
	if rec.layout, err = json.Marshal(sl); err != nil {
		return nil, fmt.Errorf("encoding layout: %w", err)
	}
	bulkBase := "/studies/" + rec.studyUID + "/series/" + rec.seriesUID + "/instances/" + rec.sopUID + "/bulkdata/"
	if rec.metadata, err = in.JSON(f, bulkBase); err != nil {
		return nil, fmt.Errorf("%w: encoding metadata: %v", ErrInvalid, err)
	}
	return rec, nil
}

func nullInt(v int, ok bool) sql.NullInt64 { return sql.NullInt64{Int64: int64(v), Valid: ok} }
