package scp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/internal/testtool"
)

const (
	testAE         = "SANPING"
	sopClassSC     = "1.2.840.10008.5.1.4.1.1.7"
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsJPEGLossless = "1.2.840.10008.1.2.4.70"
)

func needTools(tb testing.TB, tools ...string) {
	tb.Helper()
	testtool.Need(tb, testtool.DCMTK, tools...)
}

// tool runs a DCMTK program with Nagle off (TCP_NODELAY=1); otherwise each file waits 40 ms.
func tool(tb testing.TB, name string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustTool(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := tool(tb, name, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

type testServer struct {
	*Server
	dir    string
	port   string
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	stored []Stored
}

func startServer(tb testing.TB, cfg Config) *testServer {
	tb.Helper()
	ts := &testServer{dir: tb.TempDir(), done: make(chan error, 1)}
	if cfg.AETitle == "" {
		cfg.AETitle = testAE
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Dir = ts.dir
	cfg.OnStored = func(st Stored) {
		ts.mu.Lock()
		ts.stored = append(ts.stored, st)
		ts.mu.Unlock()
	}
	s, err := Listen(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts.serve(tb, s)
	return ts
}

// serve runs s until the test ends.
func (ts *testServer) serve(tb testing.TB, s *Server) {
	ts.Server = s
	ts.port = strconv.Itoa(s.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- s.Serve(ctx) }()
	tb.Cleanup(func() { ts.stop(tb) })
}

func (ts *testServer) stop(tb testing.TB) {
	ts.cancel()
	select {
	case err := <-ts.done:
		if err != nil {
			tb.Errorf("Serve: %v", err)
		}
		ts.done <- nil // later stops return at once
	case <-time.After(10 * time.Second):
		tb.Errorf("Serve did not return after cancel")
	}
}

func (ts *testServer) storedCount() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.stored)
}

func listDir(tb testing.TB, dir string) []string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// testUID is the SOP Instance UID of test file i of a set; all have the same length so that
// files can be made by replacing the UID in a template.
func testUID(set, i int) string { return fmt.Sprintf("1.2.826.0.1.3680043.9.7777.%03d.%06d", set, i) }

// makeFiles writes n secondary capture files with rows x cols 16-bit pixels (explicit VR
// little endian, by dump2dcm) to dir and returns their paths.
func makeFiles(tb testing.TB, dir string, set, n, rows, cols int) []string {
	tb.Helper()
	needTools(tb, "dump2dcm")
	pix := make([]byte, 2*rows*cols)
	for i := range rows * cols {
		binary.LittleEndian.PutUint16(pix[2*i:], uint16(i*7%4096))
	}
	raw := filepath.Join(dir, "pixels.raw")
	if err := os.WriteFile(raw, pix, 0o644); err != nil {
		tb.Fatal(err)
	}
	tmpl := testUID(set, 0)
	dump := fmt.Sprintf(`(0008,0016) UI [%s]
(0008,0018) UI [%s]
(0008,0060) CS [OT]
(0010,0010) PN [Test^Patient]
(0010,0020) LO [P%03d]
(0020,000d) UI [1.2.826.0.1.3680043.9.7777.1]
(0020,000e) UI [1.2.826.0.1.3680043.9.7777.2]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0010) US %d
(0028,0011) US %d
(0028,0100) US 16
(0028,0101) US 12
(0028,0102) US 11
(0028,0103) US 0
(7fe0,0010) OW =%s
`, sopClassSC, tmpl, set, rows, cols, raw)
	dumpPath := filepath.Join(dir, "template.txt")
	if err := os.WriteFile(dumpPath, []byte(dump), 0o644); err != nil {
		tb.Fatal(err)
	}
	tmplPath := filepath.Join(dir, "template.dcm")
	mustTool(tb, "dump2dcm", dumpPath, tmplPath)
	b, err := os.ReadFile(tmplPath)
	if err != nil {
		tb.Fatal(err)
	}
	var paths []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("img%03d_%04d.dcm", set, i))
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(tmpl), []byte(testUID(set, i))), 0o644); err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// dataSet returns the bytes after the File Meta Information of a Part 10 file.
func dataSet(tb testing.TB, b []byte) []byte {
	tb.Helper()
	if len(b) < 144 || string(b[128:132]) != "DICM" || string(b[132:136]) != "\x02\x00\x00\x00" {
		tb.Fatalf("not a Part 10 file with a group length")
	}
	return b[144+binary.LittleEndian.Uint32(b[140:]):]
}
