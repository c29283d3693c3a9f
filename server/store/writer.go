package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// blobPath is where a new object with this SHA-256 goes, relative to the data directory: one
// directory per day of arrival, so a group commit touches (and fsyncs) one directory, and
// retention and backups can work day by day. The index records each file's path.
func blobPath(sha string, now time.Time) string {
	return filepath.Join("blobs", now.UTC().Format("2006/01/02"), sha+".dcm")
}

// writer commits queued instances in groups: it moves their files into place, fsyncs the
// directories once per group, then indexes the whole group in one transaction.
func (s *Store) writer() {
	indexQ := make(chan placed, 1)
	go s.indexer(indexQ)
	for first := range s.queue {
		batch := []*pending{first}
	drain:
		for len(batch) < 128 {
			select {
			case p, ok := <-s.queue:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		// Stage one (files in place, directories synced) of this group runs while stage two
		// (the index transaction) of the previous group waits for its fsync.
		indexQ <- placed{batch: batch, toIndex: s.place(batch)}
	}
	close(indexQ)
}

type placed struct {
	batch, toIndex []*pending
}

// indexer is the writer's second stage: one transaction per group, then the answers.
func (s *Store) indexer(q <-chan placed) {
	defer close(s.done)
	for pl := range q {
		if len(pl.toIndex) > 0 {
			if err := s.index(context.Background(), pl.toIndex); err != nil {
				for _, p := range pl.toIndex {
					p.err = fmt.Errorf("indexing instance: %w", err)
				}
				// The files stay in place: a resend then succeeds idempotently, and recovery
				// indexes them after an unclean stop.
			}
			s.mu.Lock()
			for _, p := range pl.toIndex {
				delete(s.inflight, p.rec.sopUID)
			}
			s.mu.Unlock()
		}
		for _, p := range pl.batch {
			close(p.done)
		}
	}
}

// place is the writer's first stage: decide each instance's outcome, move new files into
// place and fsync their directories. It returns the instances to index.
func (s *Store) place(batch []*pending) []*pending {
	ctx := context.Background()
	dirs := map[string]bool{}
	var toIndex []*pending
	for _, p := range batch {
		rec := p.rec
		p.result = &Result{StudyInstanceUID: rec.studyUID, SeriesInstanceUID: rec.seriesUID,
			SOPInstanceUID: rec.sopUID, SOPClassUID: rec.sopClass, SHA256: rec.sha, Warnings: rec.warnings}
		s.mu.RLock()
		existing, ok := s.inflight[rec.sopUID]
		s.mu.RUnlock()
		if ok {
			// stored by an earlier group whose index commit is still running
		} else if err := s.lookupSHA(ctx, rec.sopUID, &existing); err != nil && !errors.Is(err, sql.ErrNoRows) {
			p.err = fmt.Errorf("looking up SOP Instance UID: %w", err)
			os.Remove(p.tmpPath)
			continue
		}
		switch {
		case existing == rec.sha:
			p.result.Outcome = AlreadyStored
			os.Remove(p.tmpPath)
		case existing != "":
			p.result.Outcome = Conflict
			dst := filepath.Join(s.dir, "conflicts", rec.sha+".dcm")
			if err := os.Rename(p.tmpPath, dst); err != nil {
				p.err = fmt.Errorf("keeping conflicting instance: %w", err)
				os.Remove(p.tmpPath)
				continue
			}
			dirs[filepath.Dir(dst)] = true
			p.result.Warnings = append(p.result.Warnings, fmt.Sprintf(
				"SOP Instance UID %s is already stored with different content (SHA-256 %s); the stored object was kept and this one set aside for review (SHA-256 %s)",
				rec.sopUID, existing, rec.sha))
			s.log.Warn("conflicting instance set aside", "sop_instance_uid", rec.sopUID, "stored_sha256", existing, "new_sha256", rec.sha, "path", dst)
		default:
			rec.path = blobPath(rec.sha, time.Now())
			dst := filepath.Join(s.dir, rec.path)
			if _, ok := s.dirs[filepath.Dir(dst)]; !ok {
				if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
					p.err = fmt.Errorf("creating blob directory: %w", err)
					os.Remove(p.tmpPath)
					continue
				}
				// New day directories are entries of their parents.
				dirs[filepath.Dir(filepath.Dir(dst))] = true
				dirs[filepath.Dir(filepath.Dir(filepath.Dir(dst)))] = true
				dirs[filepath.Join(s.dir, "blobs")] = true
			}
			if err := os.Rename(p.tmpPath, dst); err != nil {
				p.err = fmt.Errorf("moving instance into place: %w", err)
				os.Remove(p.tmpPath)
				continue
			}
			dirs[filepath.Dir(dst)] = true
			s.mu.Lock()
			s.inflight[rec.sopUID] = rec.sha
			s.mu.Unlock()
			toIndex = append(toIndex, p)
		}
	}
	if err := s.syncDirs(dirs); err != nil {
		s.mu.Lock()
		for _, p := range toIndex {
			delete(s.inflight, p.rec.sopUID)
		}
		s.mu.Unlock()
		for _, p := range batch {
			if p.err == nil {
				p.err = fmt.Errorf("syncing directories: %w", err)
			}
		}
		return nil
	}
	return toIndex
}

func (s *Store) lookupSHA(ctx context.Context, sopUID string, sha *string) error {
	st, err := s.stmts.get(ctx, `SELECT sha256 FROM instances WHERE sop_uid = ?`)
	if err != nil {
		return err
	}
	return st.QueryRowContext(ctx, sopUID).Scan(sha)
}

func (s *Store) index(ctx context.Context, batch []*pending) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	newSeries := map[int64]bool{}
	for _, p := range batch {
		stPK, created, err := insertRecord(txStmts{ctx, tx, &s.stmts}, p.rec)
		if err != nil {
			return err
		}
		if created {
			newSeries[stPK] = true
		}
	}
	for pk := range newSeries {
		if _, err := tx.ExecContext(ctx, `UPDATE studies SET modalities = (SELECT coalesce(group_concat(m, '\'), '') FROM
			(SELECT DISTINCT modality AS m FROM series WHERE study_pk = ?1 AND modality != '' ORDER BY m)) WHERE pk = ?1`, pk); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// insertRecord indexes one instance, keeping the study and series counters. It reports the
// study's key and whether a new series was created (ModalitiesInStudy then changes).
func insertRecord(tx txStmts, r *record) (studyPK int64, newSeries bool, err error) {
	now := time.Now().UnixMilli()
	var patientPK int64
	err = tx.row(`INSERT INTO patients (patient_id, issuer, name, birth_date, sex) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (patient_id, issuer) DO UPDATE SET name = excluded.name, birth_date = excluded.birth_date, sex = excluded.sex
		RETURNING pk`, r.patientID, r.issuer, r.patientName, r.birth, r.sex).Scan(&patientPK)
	if err != nil {
		return 0, false, fmt.Errorf("indexing patient: %w", err)
	}
	err = tx.row(`INSERT INTO studies (study_uid, patient_pk, patient_name, name_a, name_i, name_p,
		study_date, study_time, accession, study_id, description, referring, created_at, updated_at, num_instances)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
		ON CONFLICT (study_uid) DO UPDATE SET updated_at = excluded.updated_at, num_instances = num_instances + 1
		RETURNING pk`, r.studyUID, patientPK, r.patientName, r.nameA, r.nameI, r.nameP,
		r.studyDate, r.studyTime, r.accession, r.studyID, r.studyDesc, r.referring, now, now).Scan(&studyPK)
	if err != nil {
		return 0, false, fmt.Errorf("indexing study: %w", err)
	}
	var seriesPK int64
	err = tx.row(`UPDATE series SET num_instances = num_instances + 1 WHERE series_uid = ? RETURNING pk`, r.seriesUID).Scan(&seriesPK)
	if errors.Is(err, sql.ErrNoRows) {
		newSeries = true
		err = tx.row(`INSERT INTO series (series_uid, study_pk, modality, series_number, description,
			series_date, series_time, body_part, pps_start_date, pps_start_time, num_instances)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING pk`, r.seriesUID, studyPK, r.modality, r.seriesNumber, r.seriesDesc,
			r.seriesDate, r.seriesTim, r.bodyPart, r.ppsDate, r.ppsTime).Scan(&seriesPK)
		if err == nil {
			_, err = tx.exec(`UPDATE studies SET num_series = num_series + 1 WHERE pk = ?`, studyPK)
		}
	}
	if err != nil {
		return 0, false, fmt.Errorf("indexing series: %w", err)
	}
	_, err = tx.exec(`INSERT INTO instances (sop_uid, series_pk, sop_class, instance_number, rows, columns,
		frames, bits_allocated, transfer_syntax, path, size, sha256, metadata, layout, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.sopUID, seriesPK, r.sopClass, r.instanceNumber, r.rows, r.cols, r.frames, r.bits, r.ts,
		r.path, r.size, r.sha, r.metadata, r.layout, now)
	if err != nil {
		return 0, false, fmt.Errorf("indexing instance: %w", err)
	}
	return studyPK, newSeries, nil
}

// stmtCache keeps the writer's statements prepared: parsing SQL was a visible share of the
// per-instance cost of indexing.
type stmtCache struct {
	mu sync.Mutex
	db *sql.DB
	m  map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.m[q] = st
	return st, nil
}

// txStmts runs cached statements inside one transaction.
type txStmts struct {
	ctx context.Context
	tx  *sql.Tx
	c   *stmtCache
}

func (t txStmts) row(q string, args ...any) *sql.Row {
	st, err := t.c.get(t.ctx, q)
	if err != nil {
		return t.tx.QueryRowContext(t.ctx, q, args...)
	}
	return t.tx.StmtContext(t.ctx, st).QueryRowContext(t.ctx, args...)
}

func (t txStmts) exec(q string, args ...any) (sql.Result, error) {
	st, err := t.c.get(t.ctx, q)
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(t.ctx, st).ExecContext(t.ctx, args...)
}
