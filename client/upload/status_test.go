package upload

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStatusClearsASettledError: after a failure, a later success with nothing left in the
// queue clears the last error that `sanping-station status` shows; a failure after the last success
// stays.
func TestStatusClearsASettledError(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name          string
		errAt, okAt   time.Time
		wantErrorKept bool
	}{
		{"success after the error", t0, t0.Add(time.Minute), false},
		{"error after the success", t0.Add(time.Minute), t0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			b, _ := json.Marshal(Status{LastError: "giving up after 4 tries", LastErrorAt: c.errAt, LastSuccess: c.okAt})
			if err := os.WriteFile(filepath.Join(dir, statusName), b, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := ReadStatus(dir)
			if err != nil {
				t.Fatal(err)
			}
			if kept := st.LastError != ""; kept != c.wantErrorKept {
				t.Fatalf("last error %q shown: %v, want %v", st.LastError, kept, c.wantErrorKept)
			}
		})
	}
}
