package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/internal/tcpproxy"
)

// writeStudy writes n instances of study in nested folders (series of 10, one folder each)
// under dir, each with size bytes of pixel data, and returns their tar size.
func writeStudy(t *testing.T, dir string, study, n, size int) int64 {
	t.Helper()
	var total int64 = 1024
	for i := range n {
		series := i / 10
		d := filepath.Join(dir, fmt.Sprintf("study%d", study), fmt.Sprintf("series%d", series), "img")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b := uploadtest.Part10(uploadtest.UID(study), uploadtest.UID(study, series), uploadtest.UID(study, series, i), size)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("IM%04d.dcm", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		total += tarSize(int64(len(b)))
	}
	return total
}

func countInstances(t *testing.T, srv *uploadtest.Server, study int) int {
	t.Helper()
	inst, err := srv.Store.Instances(context.Background(), uploadtest.UID(study), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return len(inst)
}

func TestUploadTree(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	writeStudy(t, dir, 1, 100, 20<<10)
	// Neither a DICOMDIR nor a file without "DICM" is sent.
	os.WriteFile(filepath.Join(dir, "study1", "DICOMDIR"), uploadtest.Part10(uploadtest.UID(9), uploadtest.UID(9, 1), uploadtest.UID(9, 1, 1), 10), 0o644)
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not DICOM"), 0o644)
	var bundles []BundleReport
	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir(), BundleSize: 1 << 20,
		OnBundle: func(r BundleReport) { bundles = append(bundles, r) }}
	sum, err := Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 100 || sum.Failed != 0 || sum.AlreadyStored != 0 || sum.Skipped != 2 || len(sum.Files) != 100 {
		t.Fatalf("summary %+v", sum)
	}
	if sum.Bundles < 2 || len(bundles) != sum.Bundles {
		t.Fatalf("%d bundles, %d reported", sum.Bundles, len(bundles))
	}
	for _, f := range sum.Files {
		if f.StudyInstanceUID != uploadtest.UID(1) || f.SOPInstanceUID == "" || !strings.HasSuffix(f.Path, ".dcm") {
			t.Fatalf("%+v", f)
		}
	}
	if n := countInstances(t, srv, 1); n != 100 {
		t.Fatalf("%d instances stored", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.JournalDir, journalName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal left after a finished job: %v", err)
	}
	// Only the status for sanping-station status stays: no spool files, no journal.
	if left, _ := filepath.Glob(filepath.Join(cfg.JournalDir, "*")); len(left) != 1 || filepath.Base(left[0]) != statusName {
		t.Fatalf("left in the journal directory: %v", left)
	}

	sum, err = Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.AlreadyStored != 100 || sum.Stored != 0 || sum.Failed != 0 {
		t.Fatalf("second run: %+v", sum)
	}
}

func TestUploadGarbage(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	writeStudy(t, dir, 2, 5, 1000)
	bad := filepath.Join(dir, "study2", "broken.dcm")
	garbage := append(append(make([]byte, 128), "DICM"...), strings.Repeat("\xff\x13 broken ", 50)...)
	if err := os.WriteFile(bad, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir()}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 5 || sum.Failed != 1 {
		t.Fatalf("%+v", sum)
	}
	p := sum.Problems()
	if len(p) != 1 || p[0].Path != bad || p[0].Outcome != OutcomeFailed || p[0].Error == "" {
		t.Fatalf("problems %+v", p)
	}
	if n := countInstances(t, srv, 2); n != 5 {
		t.Fatalf("%d instances", n)
	}
}

func TestUploadBadToken(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	writeStudy(t, dir, 3, 1, 100)
	_, err := Run(context.Background(), Config{Server: srv.URL, Token: "spt_wrong", JournalDir: t.TempDir(), MaxAttempts: 2}, []string{dir})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Fatalf("got %v", err)
	}
}

// TestUploadBadLink cuts the link every 2 MB: the upload finishes and sends little more than
// the bundles once.
func TestUploadBadLink(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	p, err := tcpproxy.Start(strings.TrimPrefix(srv.URL, "http://"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	total := writeStudy(t, dir, 4, 40, 500<<10) // 20 MB

	ctx, cancel := context.WithCancel(context.Background())
	var cuts atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		next := int64(2 << 20)
		for ctx.Err() == nil {
			if p.Bytes.Load() >= next {
				p.Cut()
				cuts.Add(1)
				time.Sleep(50 * time.Millisecond)
				p.Restore()
				next = p.Bytes.Load() + 2<<20
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var bundled int64
	sum, err := Run(ctx, Config{Server: "http://" + p.Addr(), Token: srv.Token, JournalDir: t.TempDir(),
		OnBundle: func(r BundleReport) { bundled += r.Size }}, []string{dir})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 40 || sum.Failed != 0 || sum.AlreadyStored != 0 {
		t.Fatalf("%+v", sum)
	}
	if n := countInstances(t, srv, 4); n != 40 {
		t.Fatalf("%d instances", n)
	}
	if bundled < total || bundled > total+4096 {
		t.Fatalf("bundles of %d bytes, expected about %d", bundled, total)
	}
	total = bundled
	sent := p.Bytes.Load()
	t.Logf("%d cuts; bundles %d bytes, proxy %d bytes (%.3fx), PATCH bodies %d bytes", cuts.Load(), total, sent, float64(sent)/float64(total), sum.BytesSent)
	if cuts.Load() < 3 {
		t.Fatalf("only %d cuts", cuts.Load())
	}
	// Each cut may waste what was in flight (socket buffers, the PATCH under way: measured up
	// to ~0.4 MB); resending whole bundles (16 MB) would cost far more.
	if limit := total + cuts.Load()*(512<<10) + 64<<10; sent > limit {
		t.Fatalf("proxy carried %d bytes for %d of bundles (limit %d)", sent, total, limit)
	}
}

// countingHandler calls at once the PATCH bodies it has read reach n bytes.
func countingHandler(n int64, at func()) func(http.Handler) http.Handler {
	var read atomic.Int64
	var once sync.Once
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				r.Body = &countingBody{ReadCloser: r.Body, f: func(k int) {
					if read.Add(int64(k)) >= n {
						once.Do(at)
					}
				}}
			}
			h.ServeHTTP(w, r)
		})
	}
}

// cutHandler ends the PATCH body during which n bytes in all were read, calling at; later
// PATCHes go through.
func cutHandler(n int64, at func()) func(http.Handler) http.Handler {
	var read atomic.Int64
	var once sync.Once
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && read.Load() < n {
				r.Body = &cutBody{ReadCloser: r.Body, left: &read, n: n, at: func() { once.Do(at) }}
			}
			h.ServeHTTP(w, r)
		})
	}
}

type cutBody struct {
	io.ReadCloser
	left *atomic.Int64
	n    int64
	at   func()
}

func (b *cutBody) Read(p []byte) (int, error) {
	room := b.n - b.left.Load()
	if room <= 0 {
		b.at()
		return 0, errors.New("link cut")
	}
	k, err := b.ReadCloser.Read(p[:min(int64(len(p)), room)])
	b.left.Add(int64(k))
	return k, err
}

type countingBody struct {
	io.ReadCloser
	f func(int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.f(n)
	return n, err
}

// TestUploadKilled stops a run mid-PATCH without any cleanup (as kill -9 would), then runs
// again on the same journal: the job finishes, each instance is stored once, and the second
// run does not send again what the server received before the kill (the server keeps, and
// syncs, what arrives of a PATCH cut short; the second run asks it with HEAD).
func TestUploadKilled(t *testing.T) {
	ctx1, kill := context.WithCancel(context.Background())
	defer kill()
	const killAt = 7<<20 + 12345
	srv := uploadtest.Start(t, countingHandler(killAt, kill))
	dir := t.TempDir()
	total := writeStudy(t, dir, 5, 40, 500<<10)
	journalDir := t.TempDir()
	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: journalDir}
	_, err := Run(ctx1, cfg, []string{dir})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(journalDir, journalName)); err != nil {
		t.Fatalf("no journal after the kill: %v", err)
	}

	var bundled int64
	cfg.OnBundle = func(r BundleReport) { bundled += r.Size }
	sum, err := Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 40 || sum.AlreadyStored != 0 || sum.Failed != 0 {
		t.Fatalf("%+v", sum)
	}
	if n := countInstances(t, srv, 5); n != 40 {
		t.Fatalf("%d instances", n)
	}
	// Tar overhead: two zero blocks per bundle, two header blocks per member.
	total += int64(sum.Bundles)*1024 + 40*1024
	if bundled < total/2 || bundled > total {
		t.Fatalf("second run finished bundles of %d bytes, expected up to %d", bundled, total)
	}
	t.Logf("bundles %d bytes; the server read %d before the kill; second run sent %d", total, killAt, sum.BytesSent)
	if sum.BytesSent > total-killAt {
		t.Fatalf("second run sent %d bytes, more than the %d left", sum.BytesSent, total-killAt)
	}
}

// TestUploadGone: an upload the server no longer knows (404 on HEAD) is created again.
func TestUploadGone(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	writeStudy(t, dir, 6, 3, 1000)
	journalDir := t.TempDir()
	j, err := openJournal(journalDir)
	if err != nil {
		t.Fatal(err)
	}
	found, _, _, err := walk([]string{dir}, false)
	if err != nil {
		t.Fatal(err)
	}
	j.Bundles = group(found, 16<<20)
	b := j.Bundles[0]
	prepare(b, nil)
	vt, err := layout(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Size = vt.size
	b.State, b.URL = stateUploading, srv.URL+"/api/uploads/0123456789abcdef0123456789abcdef"
	if err := j.save(); err != nil {
		t.Fatal(err)
	}
	if err := j.saveBundle(b); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: journalDir}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 3 {
		t.Fatalf("%+v", sum)
	}
}

// TestUploadRefusedBundle: a bundle the server refuses (here 413 on its creation) fails its
// files with the reason; the job goes on with the next bundle.
func TestUploadRefusedBundle(t *testing.T) {
	var posts atomic.Int64
	srv := uploadtest.Start(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && posts.Add(1) == 1 {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				io.WriteString(w, `{"status":413,"detail":"an upload is at most 10 bytes"}`)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	writeStudy(t, dir, 8, 20, 100<<10)
	sum, err := Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir(), BundleSize: 1 << 20}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Bundles != 2 || sum.Failed != 10 || sum.Stored != 10 {
		t.Fatalf("%+v", sum)
	}
	for _, f := range sum.Problems() {
		if !strings.Contains(f.Error, "at most 10 bytes") {
			t.Fatalf("%+v", f)
		}
	}
	if n := countInstances(t, srv, 8); n != sum.Stored {
		t.Fatalf("%d instances, %d stored", n, sum.Stored)
	}
}

func TestGroup(t *testing.T) {
	files := []candidate{{"a", 100, ""}, {"b", 5000, ""}, {"c", 100, ""}, {"d", 100, ""}}
	bs := group(files, 6144)
	var got []string
	for _, b := range bs {
		got = append(got, strings.Join(b.Files, ""))
	}
	if strings.Join(got, ",") != "a,b,cd" {
		t.Fatalf("%v", got)
	}
}

// TestUploadFileChanged: a file replaced after its bundle was laid out (here between a killed
// run and the next) is noticed by its size and time; the bundle is hashed again and sent as a
// new upload, and the server stores the file as it is now.
func TestUploadFileChanged(t *testing.T) {
	ctx1, kill := context.WithCancel(context.Background())
	defer kill()
	// The server reads 1 MB of the bundle, then the link and the process die: no more of it
	// reaches the server (a counting handler would let the socket buffers through).
	srv := uploadtest.Start(t, cutHandler(1<<20, kill))
	dir := t.TempDir()
	writeStudy(t, dir, 7, 10, 300<<10)
	journalDir := t.TempDir()
	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: journalDir}
	if _, err := Run(ctx1, cfg, []string{dir}); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	j, err := openJournal(journalDir)
	if err != nil || len(j.Bundles) != 1 || len(j.Bundles[0].Members) != 10 || j.Bundles[0].URL == "" {
		t.Fatalf("journal after the kill: %+v, %v", j, err)
	}
	// The instance replaced: same SOP Instance UID, other pixel data and size.
	changed := filepath.Join(dir, "study7", "series0", "img", "IM0003.dcm")
	data := uploadtest.Part10(uploadtest.UID(7), uploadtest.UID(7, 0), uploadtest.UID(7, 0, 3), 100<<10)
	if err := os.WriteFile(changed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(5 * time.Second)
	os.Chtimes(changed, later, later)

	sum, err := Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	// Members the server ingested from the cut PATCH (it stores them as they arrive) are
	// already stored when the new upload brings them again.
	if sum.Stored+sum.AlreadyStored != 10 || sum.Failed != 0 || sum.Conflicts != 0 {
		t.Fatalf("%+v", sum)
	}
	insts, err := srv.Store.Instances(context.Background(), uploadtest.UID(7), uploadtest.UID(7, 0), uploadtest.UID(7, 0, 3))
	if err != nil || len(insts) != 1 {
		t.Fatalf("%v %v", insts, err)
	}
	if want := sha256Hex(data); insts[0].SHA256 != want {
		t.Fatalf("stored %s, the file now is %s", insts[0].SHA256, want)
	}
}
