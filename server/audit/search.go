package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxSearchLimit bounds one page of Search.
const MaxSearchLimit = 500

// ErrBadQuery marks a Query that Search refuses.
var ErrBadQuery = errors.New("audit: bad query")

// Query selects entries for Search. Zero values do not filter. From is inclusive, To exclusive.
type Query struct {
	Actor       string // username, exact
	Patient     string // patient ID or name, exact
	Action      string // exact, or a prefix when it ends with "." ("live.")
	Institution string // institution code, exact
	From, To    time.Time
	Before      int64 // keyset cursor: only entries with Seq < Before (0: from the newest)
	Limit       int   // 1..MaxSearchLimit; 0 means 100

	actions []string // Action's prefix expanded (expandPrefix); nil when not expanded
}

// Search returns one page of entries matching q, newest (highest Seq) first, and the cursor of
// the next page (its Before), 0 when this page is the last. Each filter is served by its
// (column, time_ms) index, so a page costs the entries in the filtered range, not the size of
// the trail.
func (l *Log) Search(ctx context.Context, q Query) (page []Entry, next int64, err error) {
	page, err = l.search(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	if len(page) > q.limit() {
		page = page[:q.limit()]
		next = page[len(page)-1].Seq
	}
	return page, next, nil
}

func (q Query) limit() int {
	if q.Limit == 0 {
		return 100
	}
	return q.Limit
}

// search reads one entry more than the page, to tell whether there is a next page.
func (l *Log) search(ctx context.Context, q Query) ([]Entry, error) {
	if q.Limit < 0 || q.Limit > MaxSearchLimit {
		return nil, fmt.Errorf("%w: limit must be 1 to %d", ErrBadQuery, MaxSearchLimit)
	}
	if q.Before < 0 {
		return nil, fmt.Errorf("%w: before must be a positive sequence number", ErrBadQuery)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return nil, fmt.Errorf("%w: from must be before to", ErrBadQuery)
	}
	q, err := l.expandPrefix(ctx, q)
	if err != nil {
		return nil, err
	}
	if q.actions != nil && len(q.actions) == 0 {
		return []Entry{}, nil // no action under the prefix
	}
	sqlq, args := q.sql(q.limit() + 1)
	rows, err := l.db.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: search: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	return out, nil
}

// SearchPlan returns SQLite's query plan for q (EXPLAIN QUERY PLAN details, one per line), for
// tests that check the indexes are used.
func (l *Log) SearchPlan(ctx context.Context, q Query) (string, error) {
	q, err := l.expandPrefix(ctx, q)
	if err != nil {
		return "", err
	}
	sqlq, args := q.sql(100)
	rows, err := l.db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+sqlq, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		b.WriteString(detail + "\n")
	}
	return b.String(), rows.Err()
}

// sql is the search statement. The inner SELECT picks the page's seqs from the filter's
// index alone (seq is the rowid, in every index), sorting only integers; the outer one reads
// the page's rows. Reading every matching row before sorting made a week of "live." cost
// 37 ms at a million entries; this way it costs the index entries.
func (q Query) sql(limit int) (string, []any) {
	where, args := q.where()
	inner := `SELECT seq FROM audit_log`
	if len(where) > 0 {
		inner += ` WHERE ` + strings.Join(where, " AND ")
	}
	inner += ` ORDER BY seq DESC LIMIT ?`
	return `SELECT ` + columns + ` FROM audit_log WHERE seq IN (` + inner + `) ORDER BY seq DESC`, append(args, limit)
}

// expandPrefix turns an action prefix into the list of actions under it, found by one index
// seek each (a loose index scan: there are a few dozen actions, not millions), so the
// (action, time_ms) index is searched per action with the time range rather than scanned
// over the whole prefix.
func (l *Log) expandPrefix(ctx context.Context, q Query) (Query, error) {
	if !strings.HasSuffix(q.Action, ".") {
		return q, nil
	}
	lo, hi := q.Action, q.Action[:len(q.Action)-1]+"/"
	q.actions = []string{}
	for after := lo; ; {
		var a sql.NullString
		if err := l.db.QueryRowContext(ctx, `SELECT min(action) FROM audit_log WHERE action >= ? AND action < ? AND action <> ?`,
			after, hi, after).Scan(&a); err != nil {
			return q, fmt.Errorf("audit: search: %w", err)
		}
		if !a.Valid {
			return q, nil
		}
		q.actions = append(q.actions, a.String)
		after = a.String
	}
}

func (q Query) where() ([]string, []any) {
	var where []string
	var args []any
	if q.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, q.Actor)
	}
	if q.Institution != "" {
		where = append(where, "institution = ?")
		args = append(args, q.Institution)
	}
	if q.Patient != "" {
		// Two indexes, one OR: SQLite answers it as a union of two index ranges.
		where = append(where, "(patient_id = ? OR patient_name = ?)")
		args = append(args, q.Patient, q.Patient)
	}
	if len(q.actions) > 0 {
		where = append(where, "action IN (?"+strings.Repeat(", ?", len(q.actions)-1)+")")
		for _, a := range q.actions {
			args = append(args, a)
		}
	} else if q.Action != "" {
		if strings.HasSuffix(q.Action, ".") {
			// A range, not LIKE (case-insensitive, wildcards): "live." <= action < "live/".
			where = append(where, "action >= ? AND action < ?")
			args = append(args, q.Action, q.Action[:len(q.Action)-1]+"/")
		} else {
			where = append(where, "action = ?")
			args = append(args, q.Action)
		}
	}
	if !q.From.IsZero() {
		where = append(where, "time_ms >= ?")
		args = append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		where = append(where, "time_ms < ?")
		args = append(args, q.To.UnixMilli())
	}
	if q.Before > 0 {
		where = append(where, "seq < ?")
		args = append(args, q.Before)
	}
	return where, args
}

// HeadEntry is the last entry of the chain as audit_head records it.
type HeadEntry struct {
	Seq  int64
	Hash string
	Time time.Time // zero when the log is empty or the head's entry is missing
}

// State is the result of walking the chain: the head and, when the chain does not hold, where
// and why.
type State struct {
	Head   HeadEntry
	Broken *BrokenError // nil when the chain holds
}

// State walks the whole chain (Verify) and reports it with the head.
func (l *Log) State(ctx context.Context) (State, error) {
	var st State
	verr := l.Verify(ctx)
	if verr != nil && !errors.As(verr, &st.Broken) {
		return State{}, verr
	}
	h, err := headEntry(ctx, l.db)
	if err != nil {
		return State{}, err
	}
	st.Head = h
	return st, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func headEntry(ctx context.Context, db querier) (HeadEntry, error) {
	h := HeadEntry{Hash: GenesisHash}
	err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return HeadEntry{}, fmt.Errorf("audit: reading head: %w", err)
	}
	var ms int64
	err = db.QueryRowContext(ctx, `SELECT time_ms FROM audit_log WHERE seq = ?`, h.Seq).Scan(&ms)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return HeadEntry{}, fmt.Errorf("audit: reading head: %w", err)
	default:
		h.Time = time.UnixMilli(ms).UTC()
	}
	return h, nil
}

// Export reads the entries with from <= Time < to (zero: unbounded) in Seq order from one
// consistent snapshot: it calls head once with the chain head of that snapshot, then each for
// every entry as it is read, so an export of any size streams without being held in memory.
// An error from head or each stops the export and is returned.
func (l *Log) Export(ctx context.Context, from, to time.Time, head func(HeadEntry) error, each func(Entry) error) error {
	tx, err := l.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer tx.Rollback()
	h, err := headEntry(ctx, tx)
	if err != nil {
		return err
	}
	if err := head(h); err != nil {
		return err
	}
	// The range's first and last seq from the time index, then a walk of the rowid between
	// them: rows come out in seq order as they are read. Ordering the time index's rows by
	// seq would have SQLite sort the whole range first.
	where, args := Query{From: from, To: to}.where()
	cond := "1"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	var lo, hi sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(seq), max(seq) FROM audit_log WHERE `+cond, args...).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if !lo.Valid {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM audit_log NOT INDEXED WHERE seq BETWEEN ? AND ? AND `+cond+` ORDER BY seq`,
		append([]any{lo.Int64, hi.Int64}, args...)...)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		if err := each(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}
