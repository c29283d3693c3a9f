package upload

import (
	"testing"
	"time"
)

// TestFullJitter: waits spread over the whole window, never beyond it, so that stations that
// failed together do not retry together.
func TestFullJitter(t *testing.T) {
	const d = 8 * time.Second
	var buckets [8]int
	for range 8000 {
		w := FullJitter(d)
		if w <= 0 || w > d {
			t.Fatalf("wait %v outside (0, %v]", w, d)
		}
		buckets[min(int(w/time.Second), 7)]++
	}
	for i, n := range buckets {
		if n < 700 || n > 1300 { // 1000 expected in each second of the window
			t.Fatalf("second %d of the window got %d of 8000 waits: %v", i, n, buckets)
		}
	}
	if FullJitter(0) != 0 {
		t.Fatal("no wait asked, one given")
	}
}
