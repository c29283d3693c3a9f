package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sanping/internal/durable"
)

// Bundle states, in the order a bundle goes through them.
const (
	statePending   = "pending"   // files chosen; Members may not be recorded yet
	stateUploading = "uploading" // the tus upload exists at URL
	stateDone      = "done"      // the server's result is in Outcomes
)

// journalName is the journal's file in the journal directory; it is removed once every bundle
// of the job is done.
const journalName = "journal.json"

// journal is the job on disk, rewritten (and fsynced) at each state change, so that a killed
// process resumes where it stopped.
type journal struct {
	path    string
	Bundles []*bundle `json:"bundles"`
}

// bundle is a tar of Part 10 files sent as one tus upload.
type bundle struct {
	ID    string   `json:"id"`
	Files []string `json:"files"` // absolute paths; member i of the tar is Files[i]
	// Members records each file as bundled (size, time, SHA-256), and Size the tar's length:
	// enough to lay the tar out again, byte for byte, after a restart (vtar.go).
	Members  []member      `json:"members,omitempty"`
	Size     int64         `json:"size,omitempty"`
	URL      string        `json:"url,omitempty"`
	State    string        `json:"state"`
	Outcomes []FileOutcome `json:"outcomes,omitempty"`

	est int64 // Size, or before the files are hashed an estimate from their sizes
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &journal{path: filepath.Join(dir, journalName)}
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := json.Unmarshal(data, j); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (remove it to start over): %w", j.path, err)
	}
	return j, nil
}

func (j *journal) save() error {
	data, err := json.MarshalIndent(j, "", "\t")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(j.path, data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// finish removes the journal of a job whose every bundle is done.
func (j *journal) finish() error {
	err := os.Remove(j.path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return durable.SyncDir(filepath.Dir(j.path))
	}
	return err
}
