package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/store"
)

// TestSCPCommand: `sanping-station scp` answers DCMTK's echoscu and stores what storescu sends, only
// from the allowed modality.
func TestSCPCommand(t *testing.T) {
	needDCMTK(t, "echoscu", "storescu", "dump2dcm")
	addr := freeAddr(t)
	dir := t.TempDir()
	st := startStation(t, "scp", "-aet", "SANPING", "-addr", addr, "-dir", dir, "-allow", "DR_ROOM")
	host, port, _ := net.SplitHostPort(addr)
	if err := dcmtk("echoscu", "-aet", "DR_ROOM", "-aec", "SANPING", host, port); err != nil {
		t.Fatal(err)
	}
	if err := dcmtk("echoscu", "-aet", "STRANGER", "-aec", "SANPING", host, port); err == nil {
		t.Fatal("a calling AE title not allowed was accepted")
	}
	images := modalityImages(t, "1.2.826.0.1.3680043.10.99.2", "1.2.826.0.1.3680043.10.99.3", 1, 16, explicitLE)
	if err := storescu(addr, images); err != nil {
		t.Fatal(err)
	}
	// The instance is durable when storescu hears success, and in incoming/ just after.
	eventually(t, 10*time.Second, "the instance in the spool", func() bool {
		_, err := os.Stat(filepath.Join(dir, "incoming", images[0].uid+".dcm"))
		return err == nil
	}, st.output)
	if !strings.Contains(st.output(), "stored "+images[0].uid+" from DR_ROOM") {
		t.Fatalf("output: %s", st.output())
	}
}

// TestSCPForward: with -forward, what the modality sends reaches the server and moves to
// incoming/.sent.
func TestSCPForward(t *testing.T) {
	needDCMTK(t, "storescu", "dump2dcm")
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	addr := freeAddr(t)
	dir := t.TempDir()
	st := startStation(t, "scp", "-aet", "SANPING", "-addr", addr, "-dir", dir, "-forward", "-config", config, "-journal", t.TempDir())
	const study = "1.2.826.0.1.3680043.10.98.2"
	images := modalityImages(t, study, "1.2.826.0.1.3680043.10.98.3", 1, 16, explicitLE)
	if err := storescu(addr, images); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the instance forwarded", func() bool {
		ins, _ := srv.Store.Instances(context.Background(), study, "", "")
		_, sentErr := os.Stat(filepath.Join(dir, "incoming", ".sent", images[0].uid+".dcm"))
		return len(ins) == 1 && sentErr == nil
	}, st.output)
}

// needDCMTK skips the test without DCMTK's tools (.ci/run installs them).
func needDCMTK(t *testing.T, tools ...string) {
	t.Helper()
	testtool.Need(t, testtool.DCMTK, tools...)
}

// dcmtk runs one of DCMTK's network tools (with TCP_NODELAY, as DCMTK wants on loopback).
func dcmtk(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, b)
	}
	return nil
}

// loginFile saves a station login for srv, as sanping-station login does, and returns its path.
func loginFile(t *testing.T, srv *uploadtest.Server) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "client.json")
	if err := saveStationConfig(config, stationConfig{Server: srv.URL, Token: srv.Token}); err != nil {
		t.Fatal(err)
	}
	return config
}

// Transfer syntaxes the modality sends in, and storescu's flag proposing each.
const (
	explicitLE   = "1.2.840.10008.1.2.1"
	implicitLE   = "1.2.840.10008.1.2"
	jpegLossless = "1.2.840.10008.1.2.4.70" // JPEG lossless, first-order prediction (SV1)
	rleLossless  = "1.2.840.10008.1.2.5"
)

var proposeFlag = map[string]string{explicitLE: "-xe", implicitLE: "-xi", jpegLossless: "-xs", rleLossless: "-xr"}

// image is an instance as the modality holds it: a Part 10 file in its transfer syntax.
type image struct{ path, uid, syntax string }

// modalityImages writes n 16-bit MONOCHROME2 images of size x size pixels of one series, in
// syntax (DCMTK's dump2dcm, then dcmcjpeg or dcmcrle). The pixels are noise, so that compressed
// files stay large.
func modalityImages(t *testing.T, study, series string, n, size int, syntax string) []image {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "pixels.raw")
	px := make([]byte, size*size*2)
	rng := rand.New(rand.NewPCG(uint64(size), uint64(n)))
	for i := 0; i < len(px); i += 2 {
		binary.LittleEndian.PutUint16(px[i:], uint16(rng.UintN(4096)))
	}
	if err := os.WriteFile(raw, px, 0o600); err != nil {
		t.Fatal(err)
	}
	write := "+te"
	if syntax == implicitLE {
		write = "+ti"
	}
	var out []image
	for i := range n {
		uid := fmt.Sprintf("%s.%d", series, i+1)
		dump := filepath.Join(dir, uid+".dump")
		os.WriteFile(dump, fmt.Appendf(nil, `(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [%s]
(0008,0060) CS [OT]
(0010,0010) PN [Zhao^Guilan]
(0010,0020) LO [V0042]
(0020,000d) UI [%s]
(0020,000e) UI [%s]
(0020,0013) IS [%d]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0010) US %d
(0028,0011) US %d
(0028,0100) US 16
(0028,0101) US 12
(0028,0102) US 11
(0028,0103) US 0
(7fe0,0010) OW =%s
`, uid, study, series, i+1, size, size, raw), 0o600)
		plain := filepath.Join(dir, uid+".plain.dcm")
		file := filepath.Join(dir, uid+".dcm")
		cmds := [][]string{{"dump2dcm", write, dump, plain}}
		switch syntax {
		case jpegLossless:
			cmds = append(cmds, []string{"dcmcjpeg", plain, file})
		case rleLossless:
			cmds = append(cmds, []string{"dcmcrle", plain, file})
		default:
			file = plain
		}
		for _, c := range cmds {
			if b, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", c[0], err, b)
			}
		}
		out = append(out, image{file, uid, syntax})
	}
	return out
}

// storescu sends images (all in one syntax) to addr in one association, as the modality does.
func storescu(addr string, images []image) error {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-aet", "DR_ROOM", "-aec", "SANPING", "-R", proposeFlag[images[0].syntax], host, port}
	for _, im := range images {
		args = append(args, im.path)
	}
	return dcmtk("storescu", args...)
}

// station runs a client command (`sanping-station scp`, `sanping-station watch`) in the test, stopped and
// started again on the same arguments.
type station struct {
	t      *testing.T
	args   []string
	ready  string             // in the output once the command is up ("" for at once)
	outs   []*testtool.Buffer // one per run
	cancel context.CancelFunc
	done   chan int
}

// startStation runs `sanping-station scp`, up once it says it is listening.
func startStation(t *testing.T, args ...string) *station {
	return startCommand(t, "listening", args...)
}

func startCommand(t *testing.T, ready string, args ...string) *station {
	s := &station{t: t, args: args, ready: ready}
	s.start()
	t.Cleanup(func() {
		if s.cancel != nil {
			s.stop()
		}
	})
	return s
}

func (s *station) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testtool.Buffer{}
	s.outs, s.cancel, s.done = append(s.outs, out), cancel, make(chan int, 1)
	go func() { s.done <- run(ctx, s.args, out, out) }()
	eventually(s.t, 10*time.Second, "client "+s.args[0]+" up", func() bool { return strings.Contains(out.String(), s.ready) },
		func() string { return out.String() })
}

// stop ends the process as an interrupt does; it must exit cleanly.
func (s *station) stop() {
	s.t.Helper()
	s.cancel()
	s.cancel = nil
	if code := <-s.done; code != 0 {
		s.t.Errorf("sanping-station %s exited %d:\n%s", s.args[0], code, s.output())
	}
}

func (s *station) output() string {
	var b strings.Builder
	for i, o := range s.outs {
		fmt.Fprintf(&b, "--- run %d\n%s", i+1, o.String())
	}
	return b.String()
}

var (
	storedLine = regexp.MustCompile(`(?m)^stored (\S+) from`)
	batchLine  = regexp.MustCompile(`(?m)\d+ files: (\d+) stored, (\d+) already stored, (\d+) conflicts, (\d+) failed`)
)

// acknowledged counts the C-STORE successes the station gave, by SOP Instance UID.
func (s *station) acknowledged() map[string]int {
	n := map[string]int{}
	for _, m := range storedLine.FindAllStringSubmatch(s.output(), -1) {
		n[m[1]]++
	}
	return n
}

// uploads sums the forwarded batches' outcomes: stored, already stored, conflicts, failed.
func (s *station) uploads() (sum [4]int) {
	for _, m := range batchLine.FindAllStringSubmatch(s.output(), -1) {
		for i := range sum {
			v, _ := strconv.Atoi(m[i+1])
			sum[i] += v
		}
	}
	return sum
}

// eventually polls cond until it holds or the (generous) deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool, detail func() string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v\n%s", what, d, detail())
		}
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cutAfter forwards connections to target and resets each once the modality has sent n bytes:
// an association lost in the middle of an instance (cable pulled, modality crashed).
func cutAfter(t *testing.T, target string, n int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(c, up)
				io.CopyN(up, c, n)
				c.(*net.TCPConn).SetLinger(0)
				up.(*net.TCPConn).SetLinger(0)
			}()
		}
	}()
	return ln.Addr().String()
}

// serverHas is the server's instances of study by SOP Instance UID (each listed once: the
// index keys them so), with how many rows each has.
func serverHas(t *testing.T, srv *uploadtest.Server, study string) (map[string]store.Instance, map[string]int) {
	ins, err := srv.Store.Instances(context.Background(), study, "", "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	by, rows := map[string]store.Instance{}, map[string]int{}
	for _, in := range ins {
		by[in.SOPUID] = in
		rows[in.SOPUID]++
	}
	return by, rows
}

// waiting lists the instances still in the spool's incoming folder.
func waiting(t *testing.T, dir string) []string {
	w, err := filepath.Glob(filepath.Join(dir, "incoming", "*.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkForwarded: every image is on the server once, whole: the bytes the station received
// (kept in incoming/.sent) in the syntax the modality sent, or for a native image its JPEG-LS
// lossless transcoding, which DCMTK's dcmdjpls decodes to the pixels received; nothing else is.
func checkForwarded(t *testing.T, srv *uploadtest.Server, study, dir string, images []image) {
	t.Helper()
	have, rows := serverHas(t, srv, study)
	if len(have) != len(images) {
		t.Errorf("the server has %d instances of the study, want %d", len(have), len(images))
	}
	for _, im := range images {
		in, ok := have[im.uid]
		if !ok || rows[im.uid] != 1 {
			t.Errorf("%s: %d on the server, want 1", im.uid, rows[im.uid])
			continue
		}
		received := filepath.Join(dir, "incoming", ".sent", im.uid+".dcm")
		b, err := os.ReadFile(received)
		if err != nil {
			t.Errorf("%s: %v", im.uid, err)
			continue
		}
		if im.syntax == explicitLE || im.syntax == implicitLE {
			// Sent as JPEG-LS lossless: DCMTK decodes the server's copy to the pixels received.
			if in.TransferSyntax != dcm.JPEGLSLossless {
				t.Errorf("%s: stored in %s, want JPEG-LS lossless", im.uid, in.TransferSyntax)
				continue
			}
			decoded := filepath.Join(t.TempDir(), im.uid+".dcm")
			if err := dcmtk("dcmdjpls", filepath.Join(srv.Store.Dir(), in.Path), decoded); err != nil {
				t.Errorf("%s: %v", im.uid, err)
				continue
			}
			if a, b := pixelData(t, received), pixelData(t, decoded); !bytes.Equal(a, b) {
				t.Errorf("%s: dcmdjpls decodes the server's copy to other pixels (%d bytes) than received (%d bytes)", im.uid, len(b), len(a))
			}
			continue
		}
		if in.TransferSyntax != im.syntax {
			t.Errorf("%s: stored in %s, sent in %s", im.uid, in.TransferSyntax, im.syntax)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != in.SHA256 || int64(len(b)) != in.Size {
			t.Errorf("%s: the server's copy (%d bytes) is not the one received (%d bytes)", im.uid, in.Size, len(b))
		}
	}
}

// pixelData is the native Pixel Data value of a Part 10 file.
func pixelData(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil || in.Layout.Pixel == nil || in.Layout.Pixel.Encapsulated {
		t.Fatalf("%s: no native pixel data (%v)", path, err)
	}
	v := in.Layout.Pixel.Value
	return b[v.Offset : v.Offset+v.Length]
}

// holdFirstPatch lets the first PATCH of the server's tus endpoint take its first n bytes, then
// holds it until release: the station is stopped in the middle of an upload.
func holdFirstPatch(n int64) (wrap func(http.Handler) http.Handler, held <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	var first, once sync.Once
	wrap = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPatch {
				first.Do(func() { req.Body = &heldBody{ReadCloser: req.Body, left: n, held: h, release: r} })
			}
			next.ServeHTTP(w, req)
		})
	}
	return wrap, h, func() { once.Do(func() { close(r) }) }
}

type heldBody struct {
	io.ReadCloser
	left          int64
	held, release chan struct{}
}

func (b *heldBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		close(b.held)
		<-b.release
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.ReadCloser.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

// TestSCPForwardExactlyOnce: DCMTK's storescu, as the modality, sends over several associations
// at once in uncompressed and compressed syntaxes; one association is cut in the middle of an
// instance, and the station is stopped in the middle of an upload and started again. Every
// instance the station acknowledged reaches the server exactly once and whole; the one cut
// short never appears until the modality sends it again.
func TestSCPForwardExactlyOnce(t *testing.T) {
	needDCMTK(t, "storescu", "dump2dcm", "dcmcjpeg", "dcmcrle", "dcmdjpls")
	wrap, held, release := holdFirstPatch(16 << 10)
	srv := uploadtest.Start(t, wrap)
	t.Cleanup(release)
	config := loginFile(t, srv)
	study := uploadtest.UID(61)
	explicit := modalityImages(t, study, uploadtest.UID(61, 1), 8, 256, explicitLE)
	jpeg := modalityImages(t, study, uploadtest.UID(61, 2), 8, 256, jpegLossless)
	rle := modalityImages(t, study, uploadtest.UID(61, 3), 8, 256, rleLossless)
	big := modalityImages(t, study, uploadtest.UID(61, 4), 3, 1024, explicitLE) // 2 MB each
	implicit := modalityImages(t, study, uploadtest.UID(61, 5), 6, 256, implicitLE)

	dir, addr := t.TempDir(), freeAddr(t)
	st := startStation(t, "scp", "-addr", addr, "-dir", dir, "-forward", "-config", config,
		"-journal", t.TempDir(), "-interval", "300ms")

	// Four associations at once; the one through cut loses its link 1 MB into the second big
	// instance, after the first was acknowledged.
	cut := cutAfter(t, addr, 3<<20)
	errs := make(chan error, 4)
	for _, a := range []struct {
		addr   string
		images []image
	}{{addr, explicit}, {addr, jpeg}, {addr, rle}, {cut, big}} {
		go func() { errs <- storescu(a.addr, a.images) }()
	}
	var failed int
	for range 4 {
		if err := <-errs; err != nil {
			failed++
			t.Log(err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d associations failed, want only the cut one", failed)
	}
	first := slices.Concat(explicit, jpeg, rle, big[:1])
	eventually(t, 20*time.Second, "acknowledgement of every instance sent whole", func() bool {
		ack := st.acknowledged()
		for _, im := range first {
			if ack[im.uid] != 1 {
				return false
			}
		}
		return true
	}, st.output)

	// Stopped in the middle of an upload (the server holds it), then started again.
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatalf("no upload after 60 s\n%s", st.output())
	}
	st.stop()
	release()
	if ack := st.acknowledged(); ack[big[1].uid]+ack[big[2].uid] != 0 {
		t.Fatalf("instances never received whole were acknowledged\n%s", st.output())
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	if _, err := os.Stat(filepath.Join(dir, "incoming", big[1].uid+".dcm")); err == nil || len(parts) > 0 {
		t.Fatalf("a partial instance was kept: %v", parts)
	}
	st.start()
	eventually(t, 120*time.Second, "the instances received before the stop on the server", func() bool {
		have, _ := serverHas(t, srv, study)
		return len(have) >= len(first) && len(waiting(t, dir)) == 0
	}, st.output)
	if have, _ := serverHas(t, srv, study); len(have) != len(first) {
		t.Fatalf("the server has %d instances, want the %d received whole", len(have), len(first))
	}

	// The modality sends the cut association's instances again, while another sends anew.
	for _, batch := range [][]image{big, implicit} {
		go func() { errs <- storescu(addr, batch) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all := slices.Concat(first, big[1:], implicit)
	eventually(t, 120*time.Second, "every instance on the server", func() bool {
		have, _ := serverHas(t, srv, study)
		return len(have) == len(all) && len(waiting(t, dir)) == 0
	}, func() string {
		have, _ := serverHas(t, srv, study)
		return fmt.Sprintf("%d of %d on the server; waiting: %v\n%s", len(have), len(all), waiting(t, dir), st.output())
	})
	checkForwarded(t, srv, study, dir, all)
	// Each instance was stored by one upload; the station sent nothing twice but the instance
	// the modality itself sent again (big[0]), which the server already had.
	up := st.uploads()
	if up != [4]int{len(all), 1, 0, 0} {
		t.Errorf("uploads: %d stored, %d already stored, %d conflicts, %d failed; want %d stored, 1 already stored\n%s",
			up[0], up[1], up[2], up[3], len(all), st.output())
	}
}

// link is the station's way to the server: while down, connections are accepted and closed at
// once (counted: the station's tries); while up, forwarded to the server.
type link struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	tries  atomic.Int64
}

func startLink(t *testing.T, target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !l.up.Load() {
				l.tries.Add(1)
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", l.target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
			}()
		}
	}()
	return l
}

// status runs `sanping-station status` and returns the files queued and whether the link is up.
func status(t *testing.T, config, journal string) (queued int, up bool, out string) {
	t.Helper()
	var b strings.Builder
	if code := run(context.Background(), []string{"status", "-config", config, "-journal", journal}, &b, &b); code != 0 {
		t.Fatalf("sanping-station status exited %d:\n%s", code, b.String())
	}
	m := regexp.MustCompile(`queue: +\d+ bundles, (\d+) files`).FindStringSubmatch(b.String())
	if m == nil {
		t.Fatalf("sanping-station status shows no queue:\n%s", b.String())
	}
	queued, _ = strconv.Atoi(m[1])
	return queued, strings.Contains(b.String(), "link:         up"), b.String()
}

// TestSCPForwardOffline: the server out of reach for a long while (many failed tries, the
// station stopped and started again meanwhile). The modality's instances are all acknowledged
// and queue on disk, sanping-station status counts them and shows the link down; once the link is back
// each reaches the server once.
func TestSCPForwardOffline(t *testing.T) {
	needDCMTK(t, "storescu", "dump2dcm", "dcmcrle", "dcmdjpls")
	srv := uploadtest.Start(t, nil)
	l := startLink(t, strings.TrimPrefix(srv.URL, "http://"))
	config, journal := filepath.Join(t.TempDir(), "client.json"), t.TempDir()
	if err := saveStationConfig(config, stationConfig{Server: "http://" + l.ln.Addr().String(), Token: srv.Token}); err != nil {
		t.Fatal(err)
	}
	study := uploadtest.UID(62)
	explicit := modalityImages(t, study, uploadtest.UID(62, 1), 6, 128, explicitLE)
	rle := modalityImages(t, study, uploadtest.UID(62, 2), 6, 128, rleLossless)
	later := modalityImages(t, study, uploadtest.UID(62, 3), 3, 128, explicitLE)

	dir, addr := t.TempDir(), freeAddr(t)
	st := startStation(t, "scp", "-addr", addr, "-dir", dir, "-forward", "-config", config,
		"-journal", journal, "-interval", "200ms", "-max-backoff", "500ms")
	errs := make(chan error, 2)
	for _, batch := range [][]image{explicit, rle} {
		go func() { errs <- storescu(addr, batch) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err) // the station takes instances without the server
		}
	}
	queuedAre := func(n int) func() bool {
		return func() bool {
			q, up, _ := status(t, config, journal)
			return q == n && !up
		}
	}
	statusOut := func() string {
		_, _, out := status(t, config, journal)
		return out + st.output()
	}
	eventually(t, 60*time.Second, "queue of 12 files with the link down", queuedAre(12), statusOut)
	// Many failed tries (sanping-station status's own are counted before): doubling from 250 ms
	// without a cap, the 30th would be years away.
	tries := l.tries.Load()
	eventually(t, 60*time.Second, "30 failed tries", func() bool { return l.tries.Load() >= tries+30 },
		func() string { return fmt.Sprintf("%d tries\n%s", l.tries.Load(), st.output()) })

	// The station is stopped and started again, still offline: the queue is kept.
	st.stop()
	if q, _, out := status(t, config, journal); q != 12 || len(waiting(t, dir)) != 12 {
		t.Fatalf("after the stop: %d queued, %d waiting\n%s", q, len(waiting(t, dir)), out)
	}
	st.start()
	if err := storescu(addr, later); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "queue of 15 files with the link down", queuedAre(15), statusOut)
	tries = l.tries.Load()
	eventually(t, 60*time.Second, "10 more failed tries", func() bool { return l.tries.Load() >= tries+10 },
		func() string { return fmt.Sprintf("%d tries\n%s", l.tries.Load(), st.output()) })
	if have, _ := serverHas(t, srv, study); len(have) != 0 {
		t.Fatalf("%d instances reached the server through a link that is down", len(have))
	}

	l.up.Store(true)
	all := slices.Concat(explicit, rle, later)
	eventually(t, 60*time.Second, "everything on the server once the link is back", func() bool {
		have, _ := serverHas(t, srv, study)
		q, up, _ := status(t, config, journal)
		return len(have) == len(all) && len(waiting(t, dir)) == 0 && q == 0 && up
	}, statusOut)
	checkForwarded(t, srv, study, dir, all)
	if ack := st.acknowledged(); len(ack) != len(all) {
		t.Errorf("%d instances acknowledged, want %d", len(ack), len(all))
	}
	if up := st.uploads(); up != [4]int{len(all), 0, 0, 0} {
		t.Errorf("uploads: %d stored, %d already stored, %d conflicts, %d failed; want %d stored\n%s",
			up[0], up[1], up[2], up[3], len(all), st.output())
	}
}

// TestStatusSpoolWarning: with less free space than -min-free, `sanping-station scp` warns at
// start, and `sanping-station status` shows the spool's free space, the threshold, the images
// waiting to be written out and the warning, while it runs and after it stopped.
func TestStatusSpoolWarning(t *testing.T) {
	dir := t.TempDir()
	st := startStation(t, "scp", "-addr", freeAddr(t), "-dir", dir, "-min-free", "1000TiB")
	if !strings.Contains(st.output(), "free disk space below the threshold") {
		t.Errorf("no warning at start:\n%s", st.output())
	}
	spoolStatus := func() string {
		var b strings.Builder
		args := []string{"status", "-config", filepath.Join(t.TempDir(), "none.json"), "-journal", t.TempDir(), "-spool", dir}
		if code := run(context.Background(), args, &b, &b); code != 0 {
			t.Fatalf("sanping-station status exited %d:\n%s", code, b.String())
		}
		return b.String()
	}
	out := spoolStatus()
	for _, want := range []string{
		"scp running",
		"waiting:      0 images",
		"(warning below 1000.0TiB)",
		"warning:      free disk space",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`disk free: +\d+\.\d[KMGT]iB`).MatchString(out) {
		t.Errorf("status shows no free space:\n%s", out)
	}
	st.stop()
	if out := spoolStatus(); !strings.Contains(out, "scp stopped") || !strings.Contains(out, "warning:      free disk space") {
		t.Errorf("status after the stop:\n%s", out)
	}

	var b strings.Builder
	if code := run(context.Background(), []string{"status", "-config", filepath.Join(t.TempDir(), "none.json"),
		"-journal", t.TempDir(), "-spool", t.TempDir()}, &b, &b); code != 0 || !strings.Contains(b.String(), "no state in") {
		t.Errorf("status of a directory scp never ran in: exit %d\n%s", code, b.String())
	}
}

// TestByteSize: -min-free takes decimal and binary units.
func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"2GiB": 2 << 30, "500MB": 500e6, "1.5 GiB": 3 << 29, "4096": 4096, "10kib": 10 << 10, "1TB": 1e12, "7b": 7,
	} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d %v, want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "2 parsecs", "1e30"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
}
