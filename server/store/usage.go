package store

import (
	"context"
	"fmt"
	"time"
)

// Usage is the blob storage the index accounts for.
type Usage struct {
	// Bytes is the size of every blob, each counted once however many instances share it.
	Bytes int64 `json:"bytes"`
	// PerMonth is the bytes first stored in each month (YYYY-MM in the caller's zone), oldest first.
	PerMonth []MonthUsage `json:"perMonth"`
}

// MonthUsage is one month's growth.
type MonthUsage struct {
	Month string `json:"month"`
	Bytes int64  `json:"bytes"`
}

// Usage sums the blobs' sizes, and their growth per month in loc.
func (s *Store) Usage(ctx context.Context, loc *time.Location) (*Usage, error) {
	_, offset := time.Now().In(loc).Zone()
	rows, err := s.db.QueryContext(ctx, `SELECT strftime('%Y-%m', created_at / 1000 + ?, 'unixepoch') AS month, sum(size)
		FROM (SELECT min(created_at) AS created_at, max(size) AS size FROM instances GROUP BY path)
		GROUP BY month ORDER BY month`, offset)
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	defer rows.Close()
	u := &Usage{PerMonth: []MonthUsage{}}
	for rows.Next() {
		var m MonthUsage
		if err := rows.Scan(&m.Month, &m.Bytes); err != nil {
			return nil, fmt.Errorf("store: usage: %w", err)
		}
		u.Bytes += m.Bytes
		u.PerMonth = append(u.PerMonth, m)
	}
	return u, rows.Err()
}
