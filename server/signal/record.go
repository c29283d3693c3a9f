package signal

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/room"
)

// Live events go to the audit trail (joins, leaves, control, images viewed, annotations, chat,
// tracks, connection types, recordings) and quality samples to live_quality, written by one
// goroutine so a room never waits for an fsync.

type auditEvent struct {
	entry   *audit.Entry
	quality *qualitySample
	// The room event behind entry: its consultation names the patient (audit search) and,
	// with participant and detail, feeds the attendance and recordings tables.
	consultation int64
	participant  string
	detail       string
	recStart     time.Time // live.recording: when the file's first frame was written
}

type qualitySample struct {
	consultation          int64
	participant, username string
	source                string
	q                     protocol.Quality
	t                     time.Time
}

// Event records a room event (room.Sink). It never blocks.
func (s *Service) Event(e room.Event) {
	if e.Action == "live.quality" {
		var q protocol.Quality
		if json.Unmarshal([]byte(e.Detail), &q) == nil {
			s.queue(auditEvent{quality: &qualitySample{consultation: e.Consultation, participant: e.Participant, username: e.Username, q: q, source: "client", t: e.Time}})
			// The client's own RTT counts towards its quality level where higher (sfu.ReportQuality).
			if se := s.session(e.Consultation, e.Participant); se != nil {
				se.mu.Lock()
				peer := se.peer
				se.mu.Unlock()
				if peer != nil {
					peer.ReportQuality(q)
				}
			}
		}
		return
	}
	s.roomEvent(e, time.Time{})
}

// roomEvent queues a room event for the trail; a recording's comes with its start.
func (s *Service) roomEvent(e room.Event, recStart time.Time) {
	entry := audit.Entry{Time: e.Time, Actor: e.Username, Action: e.Action, Object: fmt.Sprintf("consultation:%d", e.Consultation),
		Outcome: "success", Detail: e.Participant + ": " + e.Detail}
	if se := s.session(e.Consultation, e.Participant); se != nil {
		entry.Role, entry.Institution, entry.IP, entry.UserAgent = se.info.Role, se.info.Institution, se.info.IP, se.info.UserAgent
	}
	s.queue(auditEvent{entry: &entry, consultation: e.Consultation, participant: e.Participant, detail: e.Detail, recStart: recStart})
}

func (s *Service) queue(ev auditEvent) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	select {
	case s.events <- ev:
	default:
		// Not silent: counted and logged. 8192 queued events means the disk has stalled.
		n := atomic.AddInt64(&s.dropped, 1)
		s.log.Error("AUDIT: live event not recorded, the writer is behind", "dropped", n, "event", describe(ev))
	}
}

func describe(ev auditEvent) string {
	if ev.entry != nil {
		return ev.entry.Action + " " + ev.entry.Object + " " + ev.entry.Detail
	}
	return "quality sample"
}

func (s *Service) writeEvents() {
	defer s.wg.Done()
	ctx := context.Background()
	// Live entries name the consultation's patient, for the audit search by patient; a room's
	// many events ask once. Bounded: cleared when it holds more consultations than are ever
	// live at once.
	patients := map[int64]consult.Patient{}
	for ev := range s.events {
		switch {
		case ev.entry != nil:
			if err := s.attend(ctx, ev); err != nil {
				s.log.Error("live: attendance not recorded", "err", err, "event", describe(ev))
			}
			if s.trail == nil {
				continue
			}
			if ev.consultation > 0 && s.cons != nil {
				p, ok := patients[ev.consultation]
				if !ok {
					if c, err := s.cons.Get(ctx, ev.consultation); err == nil {
						p, ok = c.Patient, true
					}
					if len(patients) >= 1000 {
						clear(patients)
					}
					if ok {
						patients[ev.consultation] = p
					}
				}
				ev.entry.PatientID, ev.entry.PatientName = p.ID, p.Name
			}
			if _, err := s.trail.Append(ctx, *ev.entry); err != nil {
				s.log.Error("AUDIT: live event not recorded", "err", err, "event", describe(ev))
			}
		case ev.quality != nil:
			q := ev.quality
			if q.t.IsZero() {
				q.t = time.Now()
			}
			b, _ := json.Marshal(q.q)
			if _, err := s.db.ExecContext(ctx, `INSERT INTO live_quality (consultation_id, participant, username, time_ms, source, sample)
				VALUES (?, ?, ?, ?, ?, ?)`, q.consultation, q.participant, q.username, q.t.UnixMilli(), q.source, string(b)); err != nil {
				s.log.Error("live: quality sample not recorded", "err", err)
			}
		}
	}
}

// SaveChat stores a chat message durably (room.ChatStore).
func (s *Service) SaveChat(ctx context.Context, consultation int64, userID int64, m protocol.ChatMessage) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO live_chat (consultation_id, participant, user_id, name, text, time_ms)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, consultation, m.Participant, userID, m.Name, m.Text, m.Time.UnixMilli()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("saving chat message: %w", err)
	}
	return id, nil
}

// LoadChat returns a consultation's last limit chat messages, oldest first (room.ChatStore).
func (s *Service) LoadChat(ctx context.Context, consultation int64, limit int) ([]protocol.ChatMessage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, participant, name, text, time_ms FROM
		(SELECT * FROM live_chat WHERE consultation_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id`, consultation, limit)
	if err != nil {
		return nil, fmt.Errorf("loading chat: %w", err)
	}
	defer rows.Close()
	out := []protocol.ChatMessage{}
	for rows.Next() {
		var m protocol.ChatMessage
		var ms int64
		if err := rows.Scan(&m.ID, &m.Participant, &m.Name, &m.Text, &ms); err != nil {
			return nil, fmt.Errorf("loading chat: %w", err)
		}
		m.Time = time.UnixMilli(ms).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// QualitySample is one participant's connection figures at one time (session log).
type QualitySample struct {
	Time        time.Time        `json:"time"`
	Participant string           `json:"participant"`
	Username    string           `json:"username"`
	Source      string           `json:"source"`
	Quality     protocol.Quality `json:"quality"`
}

// Quality returns a consultation's quality samples in time order (the session log).
func (s *Service) Quality(ctx context.Context, consultation int64) ([]QualitySample, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT time_ms, participant, username, source, sample FROM live_quality
		WHERE consultation_id = ? ORDER BY time_ms, id`, consultation)
	if err != nil {
		return nil, fmt.Errorf("reading quality samples: %w", err)
	}
	defer rows.Close()
	out := []QualitySample{}
	for rows.Next() {
		var q QualitySample
		var ms int64
		var sample string
		if err := rows.Scan(&ms, &q.Participant, &q.Username, &q.Source, &sample); err != nil {
			return nil, fmt.Errorf("reading quality samples: %w", err)
		}
		q.Time = time.UnixMilli(ms).UTC()
		json.NewDecoder(strings.NewReader(sample)).Decode(&q.Quality)
		out = append(out, q)
	}
	return out, rows.Err()
}

// attend keeps live_attendance and live_recordings up to date with a room event.
func (s *Service) attend(ctx context.Context, ev auditEvent) error {
	ms := ev.entry.Time.UnixMilli()
	if ev.entry.Time.IsZero() {
		ms = time.Now().UnixMilli()
	}
	var err error
	switch ev.entry.Action {
	case "live.join":
		_, err = s.db.ExecContext(ctx, `INSERT INTO live_attendance (consultation_id, participant, username, joined_ms)
			VALUES (?, ?, ?, ?)`, ev.consultation, ev.participant, ev.entry.Actor, ms)
	case "live.leave":
		_, err = s.db.ExecContext(ctx, `UPDATE live_attendance SET left_ms = ?
			WHERE consultation_id = ? AND participant = ? AND left_ms IS NULL`, ms, ev.consultation, ev.participant)
	case "live.recording":
		file, _, _ := strings.Cut(ev.detail, " ")
		var start sql.NullInt64
		if !ev.recStart.IsZero() {
			start = sql.NullInt64{Int64: ev.recStart.UnixMilli(), Valid: true}
		}
		_, err = s.db.ExecContext(ctx, `INSERT INTO live_recordings (consultation_id, participant, file, time_ms, start_ms)
			VALUES (?, ?, ?, ?, ?)`, ev.consultation, ev.participant, file, ms, start)
	}
	return err
}

// Attendance sums up a consultation's live sessions for the session log list.
type Attendance struct {
	FirstJoin    time.Time
	LastLeave    time.Time // zero while someone is still in the room
	Participants int       // distinct users
	Recordings   int
}

// Attendances returns the attendance of each of ids that had anyone in its room.
func (s *Service) Attendances(ctx context.Context, ids []int64) (map[int64]Attendance, error) {
	out := make(map[int64]Attendance, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	in := `(?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
	rows, err := s.db.QueryContext(ctx, `SELECT a.consultation_id, min(a.joined_ms),
			CASE WHEN count(*) = count(a.left_ms) THEN max(a.left_ms) END, count(DISTINCT a.username),
			(SELECT count(*) FROM live_recordings r WHERE r.consultation_id = a.consultation_id)
		FROM live_attendance a WHERE a.consultation_id IN `+in+` GROUP BY a.consultation_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading attendance: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, first int64
		var last sql.NullInt64
		var a Attendance
		if err := rows.Scan(&id, &first, &last, &a.Participants, &a.Recordings); err != nil {
			return nil, fmt.Errorf("reading attendance: %w", err)
		}
		a.FirstJoin = time.UnixMilli(first).UTC()
		if last.Valid {
			a.LastLeave = time.UnixMilli(last.Int64).UTC()
		}
		out[id] = a
	}
	return out, rows.Err()
}

// Recording is one finalized recorded track (the SFU's file under the data directory).
type Recording struct {
	// Time is when the file was finalized; Start when its first frame was written (zero for
	// files recorded before starts were kept).
	Time        time.Time `json:"time"`
	Start       time.Time `json:"start,omitzero"`
	Participant string    `json:"participant"`
	File        string    `json:"file"`
}

// Recordings lists a consultation's recorded tracks in time order.
func (s *Service) Recordings(ctx context.Context, consultation int64) ([]Recording, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT time_ms, start_ms, participant, file FROM live_recordings
		WHERE consultation_id = ? ORDER BY time_ms, id`, consultation)
	if err != nil {
		return nil, fmt.Errorf("reading recordings: %w", err)
	}
	defer rows.Close()
	out := []Recording{}
	for rows.Next() {
		var r Recording
		var ms int64
		var start sql.NullInt64
		if err := rows.Scan(&ms, &start, &r.Participant, &r.File); err != nil {
			return nil, fmt.Errorf("reading recordings: %w", err)
		}
		r.Time = time.UnixMilli(ms).UTC()
		if start.Valid {
			r.Start = time.UnixMilli(start.Int64).UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// LiveRoom is an open room and who is in it.
type LiveRoom struct {
	Consultation int64                  `json:"consultationId"`
	Participants []protocol.Participant `json:"participants"`
}

// LiveRooms lists the rooms open now with their participants (the admin dashboard).
func (s *Service) LiveRooms() []LiveRoom {
	out := []LiveRoom{}
	for _, id := range s.rooms.Consultations() {
		if r, ok := s.rooms.Get(id); ok {
			out = append(out, LiveRoom{Consultation: id, Participants: r.Participants()})
		}
	}
	return out
}
