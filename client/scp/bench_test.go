package scp

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStoreSCU sends files in one storescu association, to this SCP (files/s) and to
// DCMTK's storescp (storescp-files/s) for comparison: 200 files of 64 KiB pixel data, and 50
// CT-sized ones of 1 MiB. storescp does not fsync; this SCP makes each instance durable before
// answering. bench/station.sh runs the whole-program comparison of the issue (2000 and 300 files).
func BenchmarkStoreSCU(b *testing.B) {
	b.Run("small", func(b *testing.B) { benchStoreSCU(b, 200, 128, 256) })
	b.Run("ct", func(b *testing.B) { benchStoreSCU(b, 50, 512, 1024) })
}

func benchStoreSCU(b *testing.B, n, rows, cols int) {
	needTools(b, "storescu", "storescp")
	files := makeFiles(b, b.TempDir(), 50, n, rows, cols)
	ts := startServer(b, Config{})

	port := freePort(b)
	cmd := exec.Command("storescp", "-od", b.TempDir(), port)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("storescp does not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}

	send := func(port string) time.Duration {
		start := time.Now()
		mustTool(b, "storescu", append([]string{"-aec", testAE, "127.0.0.1", port}, files...)...)
		return time.Since(start)
	}
	var ours, theirs time.Duration
	b.ResetTimer()
	for b.Loop() {
		ours += send(ts.port)
		theirs += send(port)
	}
	total := float64(b.N * len(files))
	b.ReportMetric(total/ours.Seconds(), "files/s")
	b.ReportMetric(total/theirs.Seconds(), "storescp-files/s")
}

func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
