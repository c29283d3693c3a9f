package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sanping/sanping/internal/durable"
)

const statusName = "status.json"

// Status is what `sanping-station status` shows: the queue and how the last uploads went.
type Status struct {
	PendingBundles int       `json:"pendingBundles"`
	PendingFiles   int       `json:"pendingFiles"`
	PendingBytes   int64     `json:"pendingBytes"`
	LastSuccess    time.Time `json:"lastSuccess,omitzero"` // the last bundle the server took
	LastError      string    `json:"lastError,omitempty"`
	LastErrorAt    time.Time `json:"lastErrorAt,omitzero"`
}

// ReadStatus reads a journal directory's queue and last results.
func ReadStatus(journalDir string) (Status, error) {
	var st Status
	b, err := os.ReadFile(filepath.Join(journalDir, statusName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("reading upload status: %w", err)
	}
	if err == nil {
		json.Unmarshal(b, &st)
	}
	st.PendingBundles, st.PendingFiles, st.PendingBytes = 0, 0, 0
	if _, err := os.Stat(filepath.Join(journalDir, journalName)); errors.Is(err, fs.ErrNotExist) {
		st.clearSettled()
		return st, nil
	}
	j, err := openJournal(journalDir)
	if err != nil {
		return st, fmt.Errorf("reading the journal: %w", err)
	}
	for _, bd := range j.Bundles {
		if bd.State != stateDone {
			st.PendingBundles++
			st.PendingFiles += len(bd.Files)
			st.PendingBytes += bd.Size
		}
	}
	st.clearSettled()
	return st, nil
}

// clearSettled drops a last error that no longer says anything: the queue is drained and a
// bundle went through after it. A technician reading `sanping-station status` after a clean run must
// not be sent looking for a problem that is gone.
func (st *Status) clearSettled() {
	if st.PendingBundles == 0 && st.LastError != "" && st.LastSuccess.After(st.LastErrorAt) {
		st.LastError, st.LastErrorAt = "", time.Time{}
	}
}

// noteStatus records a finished bundle (err nil) or a failure, for ReadStatus. It reads only
// the status file: the queue is counted from the journal when the status is read.
func noteStatus(journalDir string, err error) {
	var st Status
	if b, rerr := os.ReadFile(filepath.Join(journalDir, statusName)); rerr == nil {
		json.Unmarshal(b, &st)
	}
	now := time.Now().UTC()
	if err == nil {
		st.LastSuccess = now
	} else {
		st.LastError, st.LastErrorAt = err.Error(), now
	}
	st.PendingBundles, st.PendingFiles, st.PendingBytes = 0, 0, 0
	if b, merr := json.Marshal(st); merr == nil {
		durable.WriteFile(filepath.Join(journalDir, statusName), b)
	}
}
