package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// blobPath is where a new object with this SHA-256 goes, relative to the data directory: one
// directory per day of arrival (retention and backups can work day by day), split by upload
// slot so concurrent uploads do not contend on one directory. The index records each path.
func blobPath(sha string, now time.Time, slot int) string {
	return filepath.Join("blobs", now.UTC().Format("2006/01/02"), fmt.Sprintf("%02d", slot), sha+".dcm")
}

// indexer commits the index entries of instances whose files are durable, in groups: one
// SQLite transaction (one WAL fsync) for whatever is waiting, then the answers.
func (s *Store) indexer() {
	defer close(s.done)
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
		if err := s.index(context.Background(), batch); err != nil {
			for _, p := range batch {
				p.err = fmt.Errorf("indexing instance: %w", err)
			}
		}
		for _, p := range batch {
			close(p.done)
		}
	}
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
		study_date, study_time, accession, study_id, description, referring, created_at, updated_at, num_instances, institution_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
		ON CONFLICT (study_uid) DO UPDATE SET updated_at = excluded.updated_at, num_instances = num_instances + 1
		RETURNING pk`, r.studyUID, patientPK, r.patientName, r.nameA, r.nameI, r.nameP,
		r.studyDate, r.studyTime, r.accession, r.studyID, r.studyDesc, r.referring, now, now, r.institutionID).Scan(&studyPK)
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
