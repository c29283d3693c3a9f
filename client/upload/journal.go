package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sanping/sanping/internal/durable"
)

// Bundle states, in the order a bundle goes through them.
const (
	statePending   = "pending"   // files chosen; Members may not be recorded yet
	stateUploading = "uploading" // the tus upload exists at URL
	stateDone      = "done"      // the server's result is in Outcomes
)

// journalName is the job's index in the journal directory: its bundles and their files,
// written when bundles are added. Each bundle's state is in bundle-<id>.json beside it,
// rewritten (and fsynced) at each change of that bundle only, so that a job of thousands of
// files costs no more per step than one of ten. All are removed once every bundle is done.
const journalName = "journal.json"

// journal is the job on disk, so that a killed process resumes where it stopped.
type journal struct {
	dir     string
	path    string
	Bundles []*bundle `json:"bundles"`
}

// bundle is a tar of Part 10 files sent as one tus upload. ID and Files are in the index; the
// rest is its state file.
type bundle struct {
	ID    string   `json:"id"`
	Files []string `json:"files"` // absolute paths; member i of the tar is Files[i]
	bundleState
	est int64 // Size, or before the files are hashed an estimate from their sizes
}

// bundleState is what changes as a bundle is sent.
type bundleState struct {
	// Members records each file as bundled (size, time, SHA-256), and Size the tar's length:
	// enough to lay the tar out again, byte for byte, after a restart (vtar.go).
	Members  []member      `json:"members,omitempty"`
	Size     int64         `json:"size,omitempty"`
	URL      string        `json:"url,omitempty"`
	State    string        `json:"state"`
	Outcomes []FileOutcome `json:"outcomes,omitempty"`
}

// indexEntry is a bundle in the index.
type indexEntry struct {
	ID    string   `json:"id"`
	Files []string `json:"files"`
}

func (j *journal) statePath(id string) string { return filepath.Join(j.dir, "bundle-"+id+".json") }

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &journal{dir: dir, path: filepath.Join(dir, journalName)}
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var index struct {
		Bundles []indexEntry `json:"bundles"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (remove it to start over): %w", j.path, err)
	}
	for _, e := range index.Bundles {
		b := &bundle{ID: e.ID, Files: e.Files, bundleState: bundleState{State: statePending}}
		data, err := os.ReadFile(j.statePath(e.ID))
		switch {
		case errors.Is(err, fs.ErrNotExist): // not started
		case err != nil:
			return nil, fmt.Errorf("journal: %w", err)
		default:
			if err := json.Unmarshal(data, &b.bundleState); err != nil {
				return nil, fmt.Errorf("journal %s is damaged (remove the journal directory to start over): %w", j.statePath(e.ID), err)
			}
		}
		j.Bundles = append(j.Bundles, b)
	}
	return j, nil
}

// save writes the index (after bundles were added).
func (j *journal) save() error {
	index := struct {
		Bundles []indexEntry `json:"bundles"`
	}{Bundles: make([]indexEntry, len(j.Bundles))}
	for i, b := range j.Bundles {
		index.Bundles[i] = indexEntry{b.ID, b.Files}
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(j.path, data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// saveBundle writes one bundle's state.
func (j *journal) saveBundle(b *bundle) error {
	data, err := json.Marshal(b.bundleState)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(j.statePath(b.ID), data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// finish removes the journal of a job whose every bundle is done.
func (j *journal) finish() error {
	var errs []error
	for _, b := range j.Bundles {
		if err := os.Remove(j.statePath(b.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return durable.SyncDir(j.dir)
}
