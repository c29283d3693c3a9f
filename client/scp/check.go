package scp

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/sanping/sanping/server/dcm"
)

// DIMSE statuses of a refused C-STORE (PS3.4 B.2.3).
const (
	// statusDataSetMismatch: "Error: Data Set does not match SOP Class".
	statusDataSetMismatch = 0xA900
)

// checkDataSet reads a received instance (the File Meta Information this SCP built from the
// command and the presentation context, then the data set as received, size bytes in all)
// and tells whether it can be used: the data set must be DICOM, name the SOP Class and SOP
// Instance the C-STORE command did, and have Study and Series Instance UIDs. A modality that
// deletes what it was told was stored must not lose a study to a file nobody can store later
// (random bytes, a PDF, a data set without UIDs). It answers statusSuccess, or a failure
// status with the reason for Error Comment.
//
// The parser is the server's (server/dcm): it walks the element headers against the file's
// size before any value is read, within limits of depth, count and inflation, and it is
// fuzzed. suyashkumar/dicom alone allocates a value's declared length before reading it: a
// data set of eight bytes declaring a 3.5 GB string made the station allocate 3.5 GB.
func checkDataSet(part10 io.ReaderAt, size int64, ts string, rq command) (status uint16, comment string) {
	// Error Comment is an LO (64 characters): the reason comes first, without the prefix.
	in, err := dcm.Parse(part10, size)
	switch {
	case errors.Is(err, dcm.ErrMetaMismatch):
		return statusDataSetMismatch, "the data set's SOP Instance UID is not the command's"
	case err != nil:
		return statusCannotUnderstand, strings.TrimPrefix(err.Error(), dcm.ErrMalformed.Error()+": ")
	case in.SOPInstanceUID != rq.SOPInstance:
		return statusDataSetMismatch, "the data set's SOP Instance UID is not the command's"
	case in.SOPClassUID != rq.SOPClass:
		return statusDataSetMismatch, "the data set's SOP Class UID is not the command's"
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
	return checkDataSet(in.f, in.stored.Size, in.stored.TransferSyntax, rq)
}
