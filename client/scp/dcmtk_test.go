package scp

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
)

func TestEcho(t *testing.T) {
	needTools(t, "echoscu")
	logged := &testtool.Buffer{}
	ts := startServer(t, Config{AllowedCallers: []string{"MODALITY", "US1"},
		Logger: slog.New(slog.NewTextHandler(logged, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	tests := []struct {
		name, calling, called string
		ok                    bool
		msg                   string // in echoscu's output when rejected
	}{
		{"allowed", "MODALITY", testAE, true, ""},
		{"wrong called AE", "MODALITY", "OTHER", false, "Called AE Title Not Recognized"},
		{"calling AE not allowed", "INTRUDER", testAE, false, "Calling AE Title Not Recognized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tool(t, "echoscu", "-aet", tt.calling, "-aec", tt.called, "127.0.0.1", ts.port)
			if tt.ok != (err == nil) {
				t.Fatalf("echoscu error %v, want success %v\n%s", err, tt.ok, out)
			}
			if !tt.ok && !strings.Contains(out, "Association Rejected") {
				t.Errorf("echoscu output does not say rejected:\n%s", out)
			}
			if !strings.Contains(out, tt.msg) {
				t.Errorf("echoscu output lacks %q:\n%s", tt.msg, out)
			}
			// The station's log says so at its default level, with both AE titles and the
			// modality's address.
			if !tt.ok {
				line := ""
				for _, l := range strings.Split(logged.String(), "\n") {
					if strings.Contains(l, "association rejected") && strings.Contains(l, "calling="+tt.calling) && strings.Contains(l, "called="+tt.called) {
						line = l
					}
				}
				if !strings.Contains(line, "peer=127.0.0.1:") {
					t.Errorf("no rejection with AE titles and address in the log:\n%s", logged.String())
				}
			}
		})
	}
}

func TestEchoLocalLimit(t *testing.T) {
	needTools(t, "echoscu")
	ts := startServer(t, Config{MaxAssociations: 1})
	c := dialAssociate(t, ts, "RAW", []presentationContext{{ID: 1, AbstractSyntax: verification, TransferSyntax: []string{tsImplicitLE}}})
	defer c.Close()
	out, err := tool(t, "echoscu", "-aec", testAE, "127.0.0.1", ts.port)
	if err == nil || !strings.Contains(out, "Local Limit Exceeded") {
		t.Fatalf("second association: err %v, output:\n%s", err, out)
	}
}

// checkStored checks that each file was stored once with the data set storescu sent, which
// for explicit VR little endian is the source file's own.
func checkStored(t *testing.T, ts *testServer, files []string, transferSyntax, sourceAE string) {
	t.Helper()
	// Instances are written out to incoming just after their success response.
	waitFor(t, "instances written out", func() bool {
		return len(listDir(t, filepath.Join(ts.dir, incomingDir))) >= len(files) && len(listDir(t, filepath.Join(ts.dir, tmpDir))) == 0
	})
	if names := listDir(t, filepath.Join(ts.dir, tmpDir)); len(names) > 0 {
		t.Errorf("files left in tmp: %v", names)
	}
	if got := listDir(t, filepath.Join(ts.dir, incomingDir)); len(got) != len(files) {
		t.Errorf("%d files in incoming, want %d", len(got), len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		uid := testUIDOf(t, src)
		stored := filepath.Join(ts.dir, incomingDir, uid+".dcm")
		got, err := os.ReadFile(stored)
		if err != nil {
			t.Errorf("%s not stored: %v", uid, err)
			continue
		}
		if transferSyntax == tsExplicitLE && !bytes.Equal(dataSet(t, got), dataSet(t, src)) {
			t.Errorf("%s: data set differs from the source file's", uid)
		}
	}
	// dcmdump reads one stored file back: meta and data set agree.
	f := files[len(files)-1]
	src, _ := os.ReadFile(f)
	uid := testUIDOf(t, src)
	out := mustTool(t, "dcmdump", "-Un", "+P", "0002,0010", "+P", "0002,0003", "+P", "0002,0016",
		"+P", "0008,0018", "+P", "7fe0,0010", filepath.Join(ts.dir, incomingDir, uid+".dcm"))
	for _, want := range []string{transferSyntax, uid, "(7fe0,0010)", "[" + sourceAE + "]"} {
		if !strings.Contains(out, want) {
			t.Errorf("dcmdump of stored %s lacks %q:\n%s", uid, want, out)
		}
	}
	if strings.Count(out, uid) != 2 {
		t.Errorf("SOP Instance UID not in both meta and data set:\n%s", out)
	}
}

// testUIDOf finds the test SOP Instance UID in a file made by makeFiles.
func testUIDOf(t *testing.T, b []byte) string {
	t.Helper()
	i := bytes.Index(b, []byte("1.2.826.0.1.3680043.9.7777."))
	if i < 0 {
		t.Fatal("no test UID in file")
	}
	return string(b[i : i+len(testUID(0, 0))])
}

func TestStoreSCU(t *testing.T) {
	needTools(t, "storescu", "dcmdump")
	ts := startServer(t, Config{})
	files := makeFiles(t, t.TempDir(), 1, 50, 64, 64)
	mustTool(t, "storescu", append([]string{"-aec", testAE, "127.0.0.1", ts.port}, files...)...)
	checkStored(t, ts, files, tsExplicitLE, "STORESCU")
	if n := ts.storedCount(); n != len(files) {
		t.Errorf("OnStored called %d times, want %d", n, len(files))
	}
}

func TestStoreSCUConcurrent(t *testing.T) {
	needTools(t, "storescu", "dcmdump")
	ts := startServer(t, Config{})
	var all []string
	sets := make([][]string, 4)
	for i := range sets {
		sets[i] = makeFiles(t, t.TempDir(), 10+i, 20, 32, 32)
		all = append(all, sets[i]...)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(sets))
	outs := make([]string, len(sets))
	for i, files := range sets {
		wg.Go(func() {
			outs[i], errs[i] = tool(t, "storescu", append([]string{"-aet", fmt.Sprintf("US%d", i), "-aec", testAE, "127.0.0.1", ts.port}, files...)...)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("storescu %d: %v\n%s", i, err, outs[i])
		}
	}
	checkStored(t, ts, all, tsExplicitLE, "US3")
}

func TestStoreSCUCompressed(t *testing.T) {
	needTools(t, "storescu", "dcmdump", "dcmcjpeg")
	ts := startServer(t, Config{})
	dir := t.TempDir()
	src := makeFiles(t, dir, 2, 1, 64, 64)[0]
	jpeg := filepath.Join(dir, "lossless.dcm")
	mustTool(t, "dcmcjpeg", src, jpeg) // JPEG lossless SV1 by default
	mustTool(t, "storescu", "-xs", "-aec", testAE, "127.0.0.1", ts.port, jpeg)
	checkStored(t, ts, []string{jpeg}, tsJPEGLossless, "STORESCU")
	got, _ := os.ReadFile(filepath.Join(ts.dir, incomingDir, testUID(2, 1)+".dcm"))
	want, _ := os.ReadFile(jpeg)
	if !bytes.Equal(dataSet(t, got), dataSet(t, want)) {
		t.Errorf("compressed data set not stored as sent")
	}
}
