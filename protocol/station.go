package protocol

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// A station's report of itself (POST /api/station/status, with its API token): what
// `sanping-station status` shows, so that the admin console sees a station's queue without a
// visit to the village.

// MaxStationErrorLen bounds StationError.Message in bytes; the station cuts longer ones.
const MaxStationErrorLen = 1000

// StationStatus is a station's upload queue, how its uploads last went, and its SCP's spool.
type StationStatus struct {
	Queue StationQueue `json:"queue"`
	// LastSuccess is when the server last took a bundle (absent: never).
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastError is the last failed upload, absent once a later one went through and the queue
	// drained.
	LastError *StationError `json:"lastError,omitempty"`
	// Spool is the SCP's (sanping-station scp), absent when the station does not run one.
	Spool *StationSpool `json:"spool,omitempty"`
}

// StationQueue is what waits in the station's upload journal.
type StationQueue struct {
	Bundles int   `json:"bundles"`
	Files   int   `json:"files"`
	Bytes   int64 `json:"bytes"`
}

// StationError is an upload's failure as the station saw it.
type StationError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// StationSpool is the SCP's spool: images acknowledged to the modality and not yet written
// out for upload, the disk's free bytes (-1: not known), and whether it refuses images for
// want of room.
type StationSpool struct {
	WaitingImages int   `json:"waitingImages"`
	WaitingBytes  int64 `json:"waitingBytes"`
	DiskFree      int64 `json:"diskFree"`
	Refusing      bool  `json:"refusing"`
}

// ErrBadStationStatus: a report whose values cannot be (negative counts, a long message).
var ErrBadStationStatus = errors.New("invalid station status")

// Validate checks a report's values.
func (s *StationStatus) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadStationStatus, fmt.Sprintf(format, args...))
	}
	if s.Queue.Bundles < 0 || s.Queue.Files < 0 || s.Queue.Bytes < 0 {
		return bad("queue counts must not be negative")
	}
	if e := s.LastError; e != nil {
		if e.Time.IsZero() {
			return bad("lastError.time is required")
		}
		if len(e.Message) > MaxStationErrorLen || !utf8.ValidString(e.Message) {
			return bad("lastError.message must be UTF-8 of at most %d bytes", MaxStationErrorLen)
		}
	}
	if sp := s.Spool; sp != nil && (sp.WaitingImages < 0 || sp.WaitingBytes < 0 || sp.DiskFree < -1) {
		return bad("spool counts must not be negative (diskFree -1: not known)")
	}
	return nil
}

// CutStationError shortens an error message to MaxStationErrorLen bytes on a rune boundary.
func CutStationError(msg string) string {
	if len(msg) <= MaxStationErrorLen {
		return msg
	}
	cut := MaxStationErrorLen - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}
