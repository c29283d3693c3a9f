package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sanping/sanping/protocol"
)

// A station's latest report of itself (POST /api/station/status), one row per API token,
// replaced by each report: the admin console's view of a village's queue.
const stationReportSchema = `
CREATE TABLE IF NOT EXISTS station_reports (
	token_id    INTEGER PRIMARY KEY,
	received_at INTEGER NOT NULL,
	report      TEXT NOT NULL
) STRICT;
`

// StationReport is a token's last report and when the server received it (the server's clock:
// a village PC's may be off by hours).
type StationReport struct {
	ReportedAt time.Time `json:"reportedAt"`
	protocol.StationStatus
}

// ReportStation keeps st as the latest report of the API token tokenID.
func (s *Service) ReportStation(ctx context.Context, tokenID int64, st protocol.StationStatus) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("station report: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO station_reports (token_id, received_at, report) VALUES (?, ?, ?)
		ON CONFLICT (token_id) DO UPDATE SET received_at = excluded.received_at, report = excluded.report`,
		tokenID, s.now().UnixMilli(), string(b))
	if err != nil {
		return fmt.Errorf("keeping station report: %w", err)
	}
	return nil
}

// StationReport returns a token's latest report, nil if it never sent one.
func (s *Service) StationReport(ctx context.Context, tokenID int64) (*StationReport, error) {
	var at int64
	var report string
	err := s.db.QueryRowContext(ctx, `SELECT received_at, report FROM station_reports WHERE token_id = ?`, tokenID).Scan(&at, &report)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading station report: %w", err)
	}
	return decodeReport(at, report)
}

// stationReports returns every token's latest report by token ID.
func (s *Service) stationReports(ctx context.Context) (map[int64]*StationReport, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT token_id, received_at, report FROM station_reports`)
	if err != nil {
		return nil, fmt.Errorf("reading station reports: %w", err)
	}
	defer rows.Close()
	out := map[int64]*StationReport{}
	for rows.Next() {
		var id, at int64
		var report string
		if err := rows.Scan(&id, &at, &report); err != nil {
			return nil, fmt.Errorf("reading station reports: %w", err)
		}
		r, err := decodeReport(at, report)
		if err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rows.Err()
}

func decodeReport(at int64, report string) (*StationReport, error) {
	r := &StationReport{ReportedAt: time.UnixMilli(at).UTC()}
	if err := json.Unmarshal([]byte(report), &r.StationStatus); err != nil {
		return nil, fmt.Errorf("reading station report: %w", err)
	}
	return r, nil
}
