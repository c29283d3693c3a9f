package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sanping/client/upload/uploadtest"
)

// lockedBuffer is a bytes.Buffer safe for the command's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSCPCommand: `client scp` answers DCMTK's echoscu and stores what storescu sends, only
// from the allowed modality.
func TestSCPCommand(t *testing.T) {
	for _, tool := range []string{"echoscu", "storescu", "dump2dcm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk; .ci/run does)", tool)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"scp", "-aet", "VILLAGE_ST", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-dir", dir, "-allow", "DR_ROOM"}, &out, &out)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("client scp exited %d: %s", code, out.String())
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), "listening"); {
		if time.Now().After(deadline) {
			t.Fatalf("client scp did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tool := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
		b, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, b)
		}
		return nil
	}
	p := fmt.Sprint(port)
	if err := tool("echoscu", "-aet", "DR_ROOM", "-aec", "VILLAGE_ST", "127.0.0.1", p); err != nil {
		t.Fatal(err)
	}
	if err := tool("echoscu", "-aet", "STRANGER", "-aec", "VILLAGE_ST", "127.0.0.1", p); err == nil {
		t.Fatal("a calling AE title not allowed was accepted")
	}
	dump := filepath.Join(dir, "x.dump")
	os.WriteFile(dump, []byte(`(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.10.99.1]
(0010,0010) PN [Wei^Dongping]
(0020,000d) UI [1.2.826.0.1.3680043.10.99.2]
(0020,000e) UI [1.2.826.0.1.3680043.10.99.3]
`), 0o600)
	file := filepath.Join(t.TempDir(), "x.dcm")
	if err := tool("dump2dcm", "+te", dump, file); err != nil {
		t.Fatal(err)
	}
	if err := tool("storescu", "-aet", "DR_ROOM", "-aec", "VILLAGE_ST", "127.0.0.1", p, file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "incoming", "1.2.826.0.1.3680043.10.99.1.dcm")); err != nil {
		t.Fatalf("the instance is not in the spool: %v", err)
	}
	if !strings.Contains(out.String(), "stored 1.2.826.0.1.3680043.10.99.1 from DR_ROOM") {
		t.Fatalf("output: %s", out.String())
	}
}

// TestSCPForward: with -forward, what the modality sends reaches the server and moves to
// incoming/.sent.
func TestSCPForward(t *testing.T) {
	for _, tool := range []string{"storescu", "dump2dcm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk; .ci/run does)", tool)
		}
	}
	srv := uploadtest.Start(t, nil)
	config := filepath.Join(t.TempDir(), "client.json")
	if err := saveStationConfig(config, stationConfig{Server: srv.URL, Token: srv.Token}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"scp", "-aet", "VILLAGE_ST", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-dir", dir,
			"-forward", "-config", config, "-journal", t.TempDir()}, &out, &out)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), "listening"); {
		if time.Now().After(deadline) {
			t.Fatalf("client scp did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dump := filepath.Join(t.TempDir(), "x.dump")
	os.WriteFile(dump, []byte(`(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.10.98.1]
(0010,0010) PN [Lan^Xiuying]
(0020,000d) UI [1.2.826.0.1.3680043.10.98.2]
(0020,000e) UI [1.2.826.0.1.3680043.10.98.3]
`), 0o600)
	file := filepath.Join(t.TempDir(), "x.dcm")
	for _, c := range [][]string{{"dump2dcm", "+te", dump, file}, {"storescu", "-aet", "DR_ROOM", "-aec", "VILLAGE_ST", "127.0.0.1", fmt.Sprint(port), file}} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c[0], err, b)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ins, _ := srv.Store.Instances(context.Background(), "1.2.826.0.1.3680043.10.98.2", "", "")
		_, sentErr := os.Stat(filepath.Join(dir, "incoming", ".sent", "1.2.826.0.1.3680043.10.98.1.dcm"))
		if len(ins) == 1 && sentErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not forwarded after 20 s: %d instances, %v\n%s", len(ins), sentErr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
