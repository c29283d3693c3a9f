package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/sanping/sanping/server/internal/dicomtest"
)

// BenchmarkIngestSmall measures ingest of ~65 KB MR instances (set SANPING_BENCH_FILES to a
// directory of .dcm files; bench/cmd/dwbench -keep writes one).
func BenchmarkIngestSmall(b *testing.B) {
	files := dicomtest.BenchFiles(b)
	st, err := Open(context.Background(), Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := st.Ingest(context.Background(), bytes.NewReader(files[i%len(files)]), ""); err != nil {
				b.Error(err)
			}
			i += 7
		}
	})
}
