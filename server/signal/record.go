package signal

import (
	"context"
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
	entry        *audit.Entry
	consultation int64 // the entry's, for its patient
	quality      *qualitySample
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
	entry := audit.Entry{Time: e.Time, Actor: e.Username, Action: e.Action, Object: fmt.Sprintf("consultation:%d", e.Consultation),
		Outcome: "success", Detail: e.Participant + ": " + e.Detail}
	if se := s.session(e.Consultation, e.Participant); se != nil {
		entry.Role, entry.Institution, entry.IP, entry.UserAgent = se.info.Role, se.info.Institution, se.info.IP, se.info.UserAgent
	}
	s.queue(auditEvent{entry: &entry, consultation: e.Consultation})
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
