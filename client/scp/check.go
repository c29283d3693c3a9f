package scp

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// DIMSE statuses of a refused C-STORE (PS3.4 B.2.3).
const (
	// statusDataSetMismatch: "Error: Data Set does not match SOP Class".
	statusDataSetMismatch = 0xA900
)

// checkDataSet reads the start of a received data set (in transfer syntax ts, size bytes)
// until it is past group 0020, and tells whether the instance can be used: it must be a
// DICOM data set, name the SOP Class and SOP Instance the C-STORE command did, and have Study
// and Series Instance UIDs. A modality that deletes what it was told was stored must not lose
// a study to a file nobody can store later (random bytes, a PDF, a data set without UIDs).
// It answers statusSuccess, or a failure status with the reason for Error Comment.
//
// The library reads element by element and the loop stops at group 0028: a CT slice costs a
// few kilobytes of parsing, not its pixels.
func checkDataSet(ds io.Reader, size int64, ts string, rq command) (status uint16, comment string) {
	defer func() {
		// The library panics on some malformed input (found by fuzzing the server's parser).
		if r := recover(); r != nil {
			status, comment = statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s", ts)
		}
	}()
	var bo binary.ByteOrder = binary.LittleEndian
	implicit := false
	switch ts {
	case tsImplicitLE:
		implicit = true
	case "1.2.840.10008.1.2.2":
		bo = binary.BigEndian
	case "1.2.840.10008.1.2.1.99": // deflated (PS3.5 A.5): the data set is a raw deflate stream
		ds, size = flate.NewReader(ds), 1<<40
	}
	p, err := dicom.NewParser(ds, size, nil, dicom.SkipMetadataReadOnNewParserInit(), dicom.SkipPixelData(),
		dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s: %v", ts, err)
	}
	p.SetTransferSyntax(bo, implicit)
	uids := map[tag.Tag]string{tag.SOPClassUID: "", tag.SOPInstanceUID: "", tag.StudyInstanceUID: "", tag.SeriesInstanceUID: ""}
	for {
		e, err := p.Next()
		if errors.Is(err, dicom.ErrorEndOfDICOM) || errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s: %v", ts, err)
		}
		if e.Tag.Group > 0x0020 {
			break
		}
		if _, want := uids[e.Tag]; want {
			if v, ok := e.Value.GetValue().([]string); ok && len(v) > 0 {
				uids[e.Tag] = strings.TrimRight(v[0], "\x00 ")
			}
		}
	}
	switch sop, class := uids[tag.SOPInstanceUID], uids[tag.SOPClassUID]; {
	case sop == "" && uids[tag.StudyInstanceUID] == "" && class == "":
		return statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s: no SOP Class, SOP Instance or Study Instance UID", ts)
	case sop != rq.SOPInstance:
		return statusDataSetMismatch, fmt.Sprintf("the data set's SOP Instance UID (0008,0018) %q is not the command's Affected SOP Instance UID %q", sop, rq.SOPInstance)
	case class != rq.SOPClass:
		return statusDataSetMismatch, fmt.Sprintf("the data set's SOP Class UID (0008,0016) %q is not the command's Affected SOP Class UID %q", class, rq.SOPClass)
	case !validUID(uids[tag.StudyInstanceUID]):
		return statusCannotUnderstand, "missing or invalid Study Instance UID (0020,000D)"
	case !validUID(uids[tag.SeriesInstanceUID]):
		return statusCannotUnderstand, "missing or invalid Series Instance UID (0020,000E)"
	}
	return statusSuccess, ""
}

// check runs checkDataSet on the instance as received (after its File Meta Information).
func (in *instanceFile) check(rq command) (uint16, string) {
	if in.err != nil {
		return statusSuccess, "" // a write error answers for itself at commit
	}
	if in.f == nil {
		ds := in.buf[in.metaLen:]
		return checkDataSet(bytes.NewReader(ds), int64(len(ds)), in.stored.TransferSyntax, rq)
	}
	size := in.stored.Size - int64(in.metaLen)
	return checkDataSet(io.NewSectionReader(in.f, int64(in.metaLen), size), size, in.stored.TransferSyntax, rq)
}
