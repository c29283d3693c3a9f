// Package audit is Sanping's tamper-evident audit trail: an append-only, hash-chained log kept in
// the SQLite index database.
//
// Every entry holds the SHA-256 of the entry before it (PrevHash) and its own Hash over its
// canonical encoding (see canonical), so changing any field of any entry, or removing an entry
// from the middle, breaks the chain at that entry. A one-row table audit_head, written in the
// same transaction as each append, records the last Seq and Hash, so removing entries from the
// end is detected as well. Triggers refuse UPDATE and DELETE on audit_log (and DELETE on
// audit_head), so the application cannot rewrite or purge history by mistake; someone with
// write access to the file can still drop the triggers, which is what Verify is for.
//
// The chain can only prove that the file is consistent with itself: an attacker who rewrites
// the tail, re-hashes every later entry and updates audit_head goes unnoticed unless the head
// (Head) has been recorded somewhere else beforehand.
package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// GenesisHash is the PrevHash of the first entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxFieldBytes bounds each text field; longer values (a hostile user agent, say) are cut at a
// UTF-8 boundary before they are hashed and stored.
const MaxFieldBytes = 16 << 10

// Entry is one audit record.
type Entry struct {
	Seq         int64     // assigned on append, 1-based, no gaps
	Time        time.Time // UTC, millisecond precision (set by Append when zero)
	Actor       string    // username
	Role        string
	Institution string
	IP          string
	UserAgent   string
	Action      string // e.g. "login", "login.failed", "study.read", "instance.store", "report.sign"
	Object      string // e.g. "study:1.2.3", "user:admin"
	Outcome     string // "success", "failure", "denied"
	Detail      string // free text, optional
	// PatientID and PatientName name the patient whose data the entry is about, when the
	// caller knows it (consultation events, study reads), so the trail can be searched by
	// patient. Optional; an entry with either set is hashed in the v2 encoding (canonical).
	PatientID   string
	PatientName string
	PrevHash    string // hex SHA-256 of the previous entry (GenesisHash for the first)
	Hash        string // hex SHA-256 of canonical(entry)
}

// BrokenError reports where the chain does not hold.
type BrokenError struct {
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// Filter selects entries for List. Zero values do not filter. Since is inclusive, Until
// exclusive; Limit 0 means no limit.
type Filter struct {
	Since, Until                time.Time
	Actor, ObjectPrefix, Action string
	Limit, Offset               int
}

type readKey struct{ actor, action, object string }

// Log is the audit trail. It is safe for concurrent use.
type Log struct {
	db  *sql.DB
	now func() time.Time

	mu sync.Mutex // serializes appends so the chain never forks

	rmu    sync.Mutex // guards the coalescing cache; taken before mu, never after
	minute int64
	seen   map[readKey]struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS audit_log (
	seq         INTEGER PRIMARY KEY,
	time_ms     INTEGER NOT NULL,
	actor       TEXT NOT NULL,
	role        TEXT NOT NULL,
	institution TEXT NOT NULL,
	ip          TEXT NOT NULL,
	user_agent  TEXT NOT NULL,
	action      TEXT NOT NULL,
	object      TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	detail      TEXT NOT NULL,
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL,
	patient_id   TEXT NOT NULL DEFAULT '',
	patient_name TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log(time_ms);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log(actor, seq);
CREATE INDEX IF NOT EXISTS audit_log_object ON audit_log(object, seq);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS audit_head_no_replace BEFORE INSERT ON audit_head
WHEN EXISTS (SELECT 1 FROM audit_head)
BEGIN SELECT RAISE(ABORT, 'audit_head exists'); END;
CREATE TRIGGER IF NOT EXISTS audit_head_forward BEFORE UPDATE ON audit_head
WHEN NEW.seq <> OLD.seq + 1
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward by one'); END;
`

// searchIndexes serve Search: each filter column with time_ms, so a filter plus a time range
// is one index range (the rowid, seq, rides along in every index).
const searchIndexes = `
CREATE INDEX IF NOT EXISTS audit_log_actor_time ON audit_log(actor, time_ms);
CREATE INDEX IF NOT EXISTS audit_log_institution_time ON audit_log(institution, time_ms);
CREATE INDEX IF NOT EXISTS audit_log_patient_id_time ON audit_log(patient_id, time_ms);
CREATE INDEX IF NOT EXISTS audit_log_patient_name_time ON audit_log(patient_name, time_ms);
CREATE INDEX IF NOT EXISTS audit_log_action_time ON audit_log(action, time_ms);
`

// migrate adds the patient columns to a trail created before they existed. ADD COLUMN does
// not rewrite rows (nor fire the UPDATE trigger); old entries read as empty and keep their v1
// hashes.
func migrate(ctx context.Context, tx *sql.Tx) error {
	var n int
	if err := tx.QueryRowContext(ctx,
		`SELECT count(*) FROM pragma_table_info('audit_log') WHERE name = 'patient_id'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `ALTER TABLE audit_log ADD COLUMN patient_id TEXT NOT NULL DEFAULT '';
		ALTER TABLE audit_log ADD COLUMN patient_name TEXT NOT NULL DEFAULT ''`)
	return err
}

// Open prepares the audit tables and triggers in db. now is the clock (time.Now when nil).
func Open(ctx context.Context, db *sql.DB, now func() time.Time) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: preparing tables: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("audit: preparing tables: %w", err)
	}
	if err := migrate(ctx, tx); err != nil {
		return nil, fmt.Errorf("audit: preparing tables: %w", err)
	}
	if _, err := tx.ExecContext(ctx, searchIndexes); err != nil {
		return nil, fmt.Errorf("audit: preparing tables: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("audit: preparing tables: %w", err)
	}
	return &Log{db: db, now: now, seen: map[readKey]struct{}{}}, nil
}

// canonical is the byte string that Hash covers: the ASCII tag "sanping-audit-v1", then Seq
// and Time (as Unix milliseconds), each as an 8-byte big-endian two's-complement integer, then
// PrevHash, Actor, Role, Institution, IP, UserAgent, Action, Object, Outcome, Detail in that
// order, each as an 8-byte big-endian byte length followed by its bytes. Length prefixes make
// the encoding unambiguous, so no two different entries share it.
//
// An entry naming a patient (PatientID or PatientName set) is encoded as v2: the tag
// "sanping-audit-v2", then the same, then PatientID and PatientName the same way. Entries
// without a patient keep the v1 encoding, so chains written before v2 verify unchanged; the
// tags differ, so no v1 encoding equals a v2 one.
func canonical(e *Entry) []byte {
	fields := []string{e.PrevHash, e.Actor, e.Role, e.Institution, e.IP, e.UserAgent,
		e.Action, e.Object, e.Outcome, e.Detail}
	tag := "sanping-audit-v1"
	if e.PatientID != "" || e.PatientName != "" {
		tag = "sanping-audit-v2"
		fields = append(fields, e.PatientID, e.PatientName)
	}
	n := 16 + 16 + 8*len(fields)
	for _, f := range fields {
		n += len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, tag...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// ComputeHash returns the hex SHA-256 of e's canonical encoding (all fields but Hash).
func ComputeHash(e Entry) string {
	sum := sha256.Sum256(canonical(&e))
	return hex.EncodeToString(sum[:])
}

// clean makes s storable and hashable as SQLite TEXT without loss: valid UTF-8, no NUL, bounded.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) > MaxFieldBytes {
		cut := MaxFieldBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

func normTime(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

type originKey struct{}

type origin struct{ ip, userAgent string }

// WithOrigin returns ctx carrying the client's address and user agent; Append fills an entry's
// empty IP and UserAgent from it, so code far from the HTTP request need not pass them along.
func WithOrigin(ctx context.Context, ip, userAgent string) context.Context {
	return context.WithValue(ctx, originKey{}, origin{ip, userAgent})
}

// Append adds an entry durably (in its own transaction) and returns it with Seq, Time,
// PrevHash and Hash set. Text fields are cleaned (see MaxFieldBytes); Action is required.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	if e.Action == "" {
		return Entry{}, errors.New("audit: entry without action")
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if o, ok := ctx.Value(originKey{}).(origin); ok {
		if e.IP == "" {
			e.IP = o.ip
		}
		if e.UserAgent == "" {
			e.UserAgent = o.userAgent
		}
	}
	e.Time = normTime(e.Time)
	for _, f := range []*string{&e.Actor, &e.Role, &e.Institution, &e.IP, &e.UserAgent,
		&e.Action, &e.Object, &e.Outcome, &e.Detail, &e.PatientID, &e.PatientName} {
		*f = clean(*f)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	defer tx.Rollback()
	// The head, not max(seq), decides the next Seq: if entries were cut from the end, the
	// next append leaves a gap that Verify reports instead of silently papering over it.
	var seq int64
	var prev string
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &prev)
	if errors.Is(err, sql.ErrNoRows) {
		// No head: a fresh log, or the head row was removed behind our back (Verify says so).
		err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if errors.Is(err, sql.ErrNoRows) {
			seq, prev, err = 0, GenesisHash, nil
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("audit: append: reading head: %w", err)
	}
	e.Seq = seq + 1
	e.PrevHash = prev
	e.Hash = ComputeHash(e)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log
		(`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, values(&e)...); err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	// UPDATE, else INSERT (not an upsert, whose INSERT trigger would fire either way).
	res, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, e.Seq, e.Hash)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err == nil && n == 0 {
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)`, e.Seq, e.Hash)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("audit: append: updating head: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	return e, nil
}

// Read records a read of patient data, coalesced: the same (actor, action, object) within the
// same UTC minute (of e.Time, or of the clock when e.Time is zero) is written once. The cache
// holds only the current minute's keys, so a restart may write one duplicate. It returns
// whether an entry was written.
func (l *Log) Read(ctx context.Context, e Entry) (bool, error) { return l.ReadAbout(ctx, e, nil) }

// PatientFunc names the patient an entry is about (ID, name), for ReadAbout.
type PatientFunc func(ctx context.Context) (id, name string, err error)

// ReadAbout is Read, with the entry's patient filled by patient (when not nil) only if the
// entry is written: the lookup costs nothing on the coalesced reads, which are most (a
// viewer asks for a study's frames one by one). A failed lookup leaves the patient empty.
func (l *Log) ReadAbout(ctx context.Context, e Entry, patient PatientFunc) (bool, error) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	ms := e.Time.UnixMilli()
	minute := ms / 60000
	if ms < 0 && ms%60000 != 0 {
		minute--
	}
	key := readKey{e.Actor, e.Action, e.Object}

	l.rmu.Lock()
	defer l.rmu.Unlock()
	if minute > l.minute {
		l.minute = minute
		clear(l.seen)
	}
	current := minute == l.minute // a late entry from an earlier minute is written, not cached
	if _, ok := l.seen[key]; ok && current {
		return false, nil
	}
	if patient != nil && e.PatientID == "" && e.PatientName == "" {
		if id, name, err := patient(ctx); err == nil {
			e.PatientID, e.PatientName = id, name
		}
	}
	if _, err := l.Append(ctx, e); err != nil {
		return false, err
	}
	if current {
		l.seen[key] = struct{}{}
	}
	return true, nil
}

// Head returns the Seq and Hash of the last entry as recorded in audit_head (0 and GenesisHash
// for an empty log). Recording it elsewhere lets a later Verify prove more.
func (l *Log) Head(ctx context.Context) (int64, string, error) {
	seq, hash, ok, err := l.head(ctx)
	if err != nil || !ok {
		return 0, GenesisHash, err
	}
	return seq, hash, nil
}

func (l *Log) head(ctx context.Context) (seq int64, hash string, ok bool, err error) {
	err = l.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("audit: reading head: %w", err)
	}
	return seq, hash, true, nil
}

// Verify walks the whole chain and returns nil, a *BrokenError naming the first entry that was
// changed or removed, or another error if the database could not be read.
func (l *Log) Verify(ctx context.Context) error { return l.verifyFrom(ctx, 1) }

// VerifyTail checks only the last n entries (and their link to the entry before), plus the
// head record: enough at start-up to notice a cut or rewritten tail.
func (l *Log) VerifyTail(ctx context.Context, n int) error {
	if n <= 0 {
		n = 1
	}
	headSeq, _, _, err := l.head(ctx)
	if err != nil {
		return err
	}
	var last int64
	if err := l.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM audit_log`).Scan(&last); err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	return l.verifyFrom(ctx, max(1, max(headSeq, last)-int64(n)+1))
}

const columns = `seq, time_ms, actor, role, institution, ip, user_agent, action, object, outcome, detail, prev_hash, hash, patient_id, patient_name`

func values(e *Entry) []any {
	return []any{e.Seq, e.Time.UnixMilli(), e.Actor, e.Role, e.Institution, e.IP, e.UserAgent,
		e.Action, e.Object, e.Outcome, e.Detail, e.PrevHash, e.Hash, e.PatientID, e.PatientName}
}

func scanEntry(rows *sql.Rows) (Entry, error) {
	var e Entry
	var ms int64
	err := rows.Scan(&e.Seq, &ms, &e.Actor, &e.Role, &e.Institution, &e.IP, &e.UserAgent,
		&e.Action, &e.Object, &e.Outcome, &e.Detail, &e.PrevHash, &e.Hash, &e.PatientID, &e.PatientName)
	e.Time = time.UnixMilli(ms).UTC()
	return e, err
}

// verifyFrom checks entries from seq `from` on, all inside one read transaction (a consistent
// snapshot under WAL, so concurrent appends do not disturb it).
func (l *Log) verifyFrom(ctx context.Context, from int64) error {
	tx, err := l.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	defer tx.Rollback()

	var headSeq int64
	var headHash string
	hasHead := true
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash)
	if errors.Is(err, sql.ErrNoRows) {
		hasHead, err = false, nil
	}
	if err != nil {
		return fmt.Errorf("audit: verify: reading head: %w", err)
	}

	prev := GenesisHash
	if from > 1 {
		err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_log WHERE seq = ?`, from-1).Scan(&prev)
		if errors.Is(err, sql.ErrNoRows) {
			return &BrokenError{Seq: from - 1, Reason: "entry missing"}
		}
		if err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
	}

	rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM audit_log WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	want := from
	var last Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
		switch {
		case e.Seq != want:
			return &BrokenError{Seq: want, Reason: fmt.Sprintf("entry missing (the next one present is %d)", e.Seq)}
		case ComputeHash(e) != e.Hash:
			return &BrokenError{Seq: e.Seq, Reason: "content does not match its hash (entry changed)"}
		case e.PrevHash != prev:
			return &BrokenError{Seq: e.Seq, Reason: fmt.Sprintf(
				"prev_hash does not match the hash of entry %d (that entry was rewritten and re-hashed, or this link changed)", e.Seq-1)}
		}
		prev = e.Hash
		last = e
		want++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}

	switch {
	case !hasHead && last.Seq == 0 && from == 1:
		return nil // empty log
	case !hasHead:
		return &BrokenError{Seq: last.Seq, Reason: "head record missing"}
	case last.Seq < headSeq:
		return &BrokenError{Seq: want, Reason: fmt.Sprintf("entry missing (removed from the end; head records %d)", headSeq)}
	case last.Seq > headSeq:
		return &BrokenError{Seq: headSeq + 1, Reason: fmt.Sprintf("entry not recorded in the head (head records %d)", headSeq)}
	case last.Hash != headHash:
		return &BrokenError{Seq: last.Seq, Reason: "hash does not match the head record"}
	}
	return nil
}

// List returns entries in Seq order, filtered by f.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where = append(where, "time_ms >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where = append(where, "time_ms < ?")
		args = append(args, f.Until.UnixMilli())
	}
	if f.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, f.Action)
	}
	if f.ObjectPrefix != "" {
		// Not LIKE: that is case-insensitive and treats % and _ as wildcards.
		where = append(where, "substr(object, 1, length(?)) = ?")
		args = append(args, f.ObjectPrefix, f.ObjectPrefix)
	}
	q := `SELECT ` + columns + ` FROM audit_log`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := int64(-1)
	if f.Limit > 0 {
		limit = int64(f.Limit)
	}
	q += ` ORDER BY seq LIMIT ? OFFSET ?`
	args = append(args, limit, max(f.Offset, 0))
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: list: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}
