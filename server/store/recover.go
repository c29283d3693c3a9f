package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sanping/sanping/internal/durable"
	"github.com/sanping/sanping/server/dcm"
)

// recover brings index and files into agreement after an unclean stop: temporary files are
// dropped (never acknowledged) and blobs missing from the index are indexed (they were durable
// before their index commit, which did not happen).
func (s *Store) recover(ctx context.Context, newIndex, haveBlobs bool) error {
	// Temporary files were never acknowledged.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("clearing %s: %w", s.tmpDir, err)
	}
	marker := filepath.Join(s.dir, cleanMarker)
	if newIndex && !haveBlobs {
		os.Remove(marker)
		return nil
	}
	// A new index over existing blobs (index.db deleted to rebuild it) is rebuilt whatever the
	// marker says.
	if _, err := os.Stat(marker); err == nil && !newIndex {
		if err := os.Remove(marker); err != nil {
			return fmt.Errorf("removing clean-shutdown marker: %w", err)
		}
		return durable.SyncDir(s.dir)
	}
	os.Remove(marker)
	start := time.Now()
	known := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT sha256 FROM instances`)
	if err != nil {
		return fmt.Errorf("recovery: listing index: %w", err)
	}
	for rows.Next() {
		var sha string
		if err := rows.Scan(&sha); err != nil {
			rows.Close()
			return fmt.Errorf("recovery: listing index: %w", err)
		}
		known[sha] = true
	}
	rows.Close()
	var repaired int
	err = filepath.WalkDir(filepath.Join(s.dir, "blobs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".dcm") {
			return err
		}
		sha := strings.TrimSuffix(d.Name(), ".dcm")
		if known[sha] {
			return nil
		}
		if err := s.reindex(ctx, path, sha); err != nil {
			s.log.Error("recovery: cannot index stored file; moved to conflicts/", "path", path, "err", err)
			return os.Rename(path, filepath.Join(s.dir, "conflicts", d.Name()))
		}
		repaired++
		return nil
	})
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	s.log.Info("recovery after unclean shutdown", "indexed_files", repaired, "took", time.Since(start))
	return nil
}

func (s *Store) reindex(ctx context.Context, path, sha string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// A file is renamed into blobs/ before its data fsync returns (the two are synced together),
	// so after a crash its content may be incomplete: it was never acknowledged, and its name,
	// the SHA-256 of the complete content, tells.
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("content (SHA-256 %s) does not match the name: written incompletely before a crash", got)
	}
	in, err := dcm.Parse(f, st.Size())
	if err != nil {
		return err
	}
	rec, err := buildRecord(f, st.Size(), in)
	if err != nil {
		return err
	}
	rec.sha = sha
	if rec.path, err = filepath.Rel(s.dir, path); err != nil {
		return err
	}
	var existing string
	if err := s.db.QueryRowContext(ctx, `SELECT sha256 FROM instances WHERE sop_uid = ?`, rec.sopUID).Scan(&existing); err == nil {
		return fmt.Errorf("SOP Instance UID %s already indexed with SHA-256 %s", rec.sopUID, existing)
	}
	return s.index(ctx, []*pending{{rec: rec}})
}
