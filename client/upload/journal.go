package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Bundle states, in the order a bundle goes through them.
const (
	statePending   = "pending"   // files chosen; the spool may not exist yet
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
	// Spool is the tar's file in the journal directory and Size its length, once written.
	Spool    string        `json:"spool,omitempty"`
	Size     int64         `json:"size,omitempty"`
	URL      string        `json:"url,omitempty"`
	State    string        `json:"state"`
	Outcomes []FileOutcome `json:"outcomes,omitempty"`

	est int64 // Size, or before the spool is written an estimate from the files' sizes
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
	if err := writeFileSync(j.path, data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// finish removes the journal of a job whose every bundle is done.
func (j *journal) finish() error {
	err := os.Remove(j.path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return syncDir(filepath.Dir(j.path))
	}
	return err
}

// writeFileSync writes a file whole or not at all: temporary file, fsync, rename, directory fsync.
func writeFileSync(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or removal in dir durable. Windows cannot fsync a directory (and
// NTFS journals renames itself).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
