package scp

import (
	"bytes"
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

// checkDataSet reads the start of a received instance (its File Meta Information, built by
// this SCP from the command and the presentation context, then the data set as received, size
// bytes in all) until it is past group 0020, and tells whether the instance can be used: the
// data set must be DICOM, name the SOP Class and SOP Instance the C-STORE command did, and have
// Study and Series Instance UIDs. A modality that deletes what it was told was stored must not
// lose a study to a file nobody can store later (random bytes, a PDF, a data set without UIDs).
// It answers statusSuccess, or a failure status with the reason for Error Comment.
//
// The library reads element by element and the loop stops at group 0028, so a CT slice costs
// a few kilobytes of parsing, not its pixels. It is given the meta information: without it the
// library guesses the transfer syntax by reading the first element every way, which on an
// explicit VR data set means a string as long as two VR letters read as a length.
func checkDataSet(part10 io.Reader, size int64, ts string, rq command) (status uint16, comment string) {
	defer func() {
		// The library panics on some malformed input (found by fuzzing the server's parser).
		if r := recover(); r != nil {
			status, comment = statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s", ts)
		}
	}()
	p, err := dicom.NewParser(part10, size, nil, dicom.SkipPixelData(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return statusCannotUnderstand, fmt.Sprintf("not a DICOM data set in transfer syntax %s: %v", ts, err)
	}
	// The presentation context's transfer syntax decides, whatever the library's table knows.
	var bo binary.ByteOrder = binary.LittleEndian
	if ts == "1.2.840.10008.1.2.2" {
		bo = binary.BigEndian
	}
	p.SetTransferSyntax(bo, ts == tsImplicitLE)
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

// check runs checkDataSet on the instance as received.
func (in *instanceFile) check(rq command) (uint16, string) {
	if in.err != nil {
		return statusSuccess, "" // a write error answers for itself at commit
	}
	if in.f == nil {
		return checkDataSet(bytes.NewReader(in.buf), int64(len(in.buf)), in.stored.TransferSyntax, rq)
	}
	return checkDataSet(io.NewSectionReader(in.f, 0, in.stored.Size), in.stored.Size, in.stored.TransferSyntax, rq)
}
