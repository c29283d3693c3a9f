package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkIngestSmall measures ingest of ~65 KB MR instances (set SANPING_BENCH_FILES to a
// directory of .dcm files; bench/cmd/dwbench -keep writes one).
func BenchmarkIngestSmall(b *testing.B) {
	dir := os.Getenv("SANPING_BENCH_FILES")
	if dir == "" {
		b.Skip("SANPING_BENCH_FILES not set")
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	if len(paths) == 0 {
		b.Skip("no files")
	}
	var files [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
	}
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
