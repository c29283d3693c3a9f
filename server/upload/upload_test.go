package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/internal/dicomtest"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/store"
)

// fixture is a store, auth with two clinics' station tokens, and the service over loopback.
type fixture struct {
	st        *store.Store
	trail     *audit.Log
	auth      *auth.Service
	dir       string
	srv       *httptest.Server
	tokA      string // clinic A's station
	tokB      string // clinic B's station
	clinicA   int64
	maxSize   int64
	uploadDir string
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	st, err := store.Open(ctx, store.Config{Dir: filepath.Join(dir, "data")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	as, err := auth.New(ctx, st.DB(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := as.AddUser(ctx, auth.NewUser{Username: "admin", Roles: []string{auth.RoleAdmin}}, "admin-password"); err != nil {
		tb.Fatal(err)
	}
	trail, err := audit.Open(ctx, st.DB(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	orgs, err := org.New(ctx, st.DB())
	if err != nil {
		tb.Fatal(err)
	}
	hosp, err := orgs.Add(ctx, org.Institution{Code: "H1", Name: "县医院", Kind: org.Hospital})
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{st: st, trail: trail, auth: as, dir: dir, maxSize: 64 << 20, uploadDir: filepath.Join(dir, "uploads")}
	for i, tok := range []*string{&f.tokA, &f.tokB} {
		c, err := orgs.Add(ctx, org.Institution{Code: fmt.Sprintf("C%d", i+1), Name: fmt.Sprintf("村卫生室%d", i+1), Kind: org.Clinic, ParentID: hosp.ID})
		if err != nil {
			tb.Fatal(err)
		}
		if i == 0 {
			f.clinicA = c.ID
		}
		if _, *tok, err = as.CreateToken(ctx, fmt.Sprintf("station-%d", i+1), c.ID, auth.RoleClinic, "admin"); err != nil {
			tb.Fatal(err)
		}
	}
	f.start(tb)
	return f
}

// start serves a new Service on the fixture's upload directory (a restarted server).
func (f *fixture) start(tb testing.TB) {
	tb.Helper()
	svc, err := New(Config{Store: f.st, Dir: f.uploadDir, BasePath: "/api/uploads/", MaxSize: f.maxSize, Audit: f.trail})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	f.auth.Mount(mux, svc.Routes())
	f.srv = httptest.NewServer(mux)
	tb.Cleanup(f.srv.Close)
}

func (f *fixture) do(tb testing.TB, method, path, token string, hdr map[string]string, body io.Reader) *http.Response {
	tb.Helper()
	if !strings.HasPrefix(path, "http") {
		path = f.srv.URL + path
	}
	req, err := http.NewRequest(method, path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// create starts an upload of size bytes and returns its URL.
func (f *fixture) create(tb testing.TB, token string, size int) string {
	tb.Helper()
	resp := f.do(tb, "POST", "/api/uploads/", token, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": strconv.Itoa(size)}, nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") == "" {
		tb.Fatalf("POST: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return resp.Header.Get("Location")
}

func (f *fixture) patch(tb testing.TB, url, token string, offset int, chunk []byte) *http.Response {
	tb.Helper()
	return f.do(tb, "PATCH", url, token, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": strconv.Itoa(offset),
		"Content-Type": "application/offset+octet-stream"}, bytes.NewReader(chunk))
}

func (f *fixture) offset(tb testing.TB, url, token string) int {
	tb.Helper()
	resp := f.do(tb, "HEAD", url, token, map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("HEAD: %d", resp.StatusCode)
	}
	n, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	if err != nil {
		tb.Fatalf("HEAD: Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return n
}

// upload sends data in one PATCH and returns the result.
func (f *fixture) upload(tb testing.TB, token string, data []byte) (string, *Result) {
	tb.Helper()
	url := f.create(tb, token, len(data))
	resp := f.patch(tb, url, token, 0, data)
	if resp.StatusCode != http.StatusNoContent {
		tb.Fatalf("final PATCH: %d", resp.StatusCode)
	}
	return url, f.result(tb, url, token)
}

func (f *fixture) result(tb testing.TB, url, token string) *Result {
	tb.Helper()
	req, _ := http.NewRequest("GET", url+"/result", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET result: %d", resp.StatusCode)
	}
	var res Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		tb.Fatal(err)
	}
	return &res
}

// instance is a Part 10 file with about pad bytes of pixel data.
func instance(study, series, sop string, pad int) []byte {
	e := dicomtest.BaseElems(dicomtest.UIDs{Study: study, Series: series, SOP: sop}, dicomtest.SOPClassSC)
	e = append(e, dicomtest.Str(dicomtest.TagOf(0x0010, 0x0010), "PN", "TEST^PATIENT"),
		dicomtest.Str(dicomtest.TagOf(0x0010, 0x0020), "LO", "P1"),
		dicomtest.Str(dicomtest.TagOf(0x0008, 0x0060), "CS", "OT"))
	cols := max(pad/2/128, 1)
	e = append(e, dicomtest.ImageElems(128, cols, 16, 0, "MONOCHROME2")...)
	e = append(e, dicomtest.E{Tag: dicomtest.TagOf(0x7FE0, 0x0010), VR: "OW", U16: dicomtest.Pixels16(128*cols, len(sop))})
	return dicomtest.File{Elems: e}.Bytes()
}

type member struct {
	name string
	data []byte
}

func bundle(tb testing.TB, members []member) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			tb.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func studyMembers(study string, n, pad int) []member {
	var ms []member
	for i := range n {
		ms = append(ms, member{fmt.Sprintf("%s/%03d.dcm", study, i), instance(study, study+".1", fmt.Sprintf("%s.1.%d", study, i+1), pad)})
	}
	return ms
}

func TestSingleFileInChunks(t *testing.T) {
	f := newFixture(t)
	data := instance("1.2.3.100", "1.2.3.100.1", "1.2.3.100.1.1", 4096)
	url := f.create(t, f.tokA, len(data))
	cuts := []int{0, len(data) / 3, 2 * len(data) / 3, len(data)}
	for i := range 3 {
		if i > 0 {
			if got := f.offset(t, url, f.tokA); got != cuts[i] {
				t.Fatalf("HEAD after chunk %d: offset %d, want %d", i, got, cuts[i])
			}
		}
		resp := f.patch(t, url, f.tokA, cuts[i], data[cuts[i]:cuts[i+1]])
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(cuts[i+1]) {
			t.Fatalf("PATCH %d: %d, offset %s", i, resp.StatusCode, resp.Header.Get("Upload-Offset"))
		}
		if last := i == 2; last != (resp.Header.Get("Upload-Result") != "") {
			t.Fatalf("PATCH %d: Upload-Result %q", i, resp.Header.Get("Upload-Result"))
		}
	}
	res := f.result(t, url, f.tokA)
	if res.Stored != 1 || len(res.Files) != 1 || res.Files[0].Outcome != OutcomeStored || res.Files[0].SOPInstanceUID != "1.2.3.100.1.1" || res.Files[0].SHA256 == "" {
		t.Fatalf("result: %+v", res)
	}
	ins, err := f.st.Instances(context.Background(), "1.2.3.100", "", "")
	if err != nil || len(ins) != 1 {
		t.Fatalf("store has %d instances (%v)", len(ins), err)
	}
	// The final answer may be lost: HEAD still says complete, a resent final PATCH is answered.
	if got := f.offset(t, url, f.tokA); got != len(data) {
		t.Fatalf("HEAD after completion: %d", got)
	}
	if resp := f.patch(t, url, f.tokA, cuts[2], data[cuts[2]:]); resp.StatusCode != http.StatusConflict {
		t.Fatalf("PATCH at an old offset after completion: %d", resp.StatusCode)
	}
	if resp := f.patch(t, url, f.tokA, len(data), nil); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Result") == "" {
		t.Fatalf("resent final PATCH: %d", resp.StatusCode)
	}
	// The data is gone (the instance is in the store); the result stays.
	if m, _ := filepath.Glob(filepath.Join(f.uploadDir, "*")); len(m) != 2 {
		t.Fatalf("upload directory holds %v", m)
	}
	entries, err := f.trail.List(context.Background(), audit.Filter{Action: "study.upload"})
	if err != nil || len(entries) != 1 || entries[0].Object != "study:1.2.3.100" || entries[0].Detail != "tus" || entries[0].Actor != "token:station-1" {
		t.Fatalf("audit: %+v (%v)", entries, err)
	}
	if resp := f.do(t, "DELETE", url, f.tokA, map[string]string{"Tus-Resumable": "1.0.0"}, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp := f.do(t, "GET", url+"/result", f.tokA, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("result after DELETE: %d", resp.StatusCode)
	}
}

func TestBundle(t *testing.T) {
	f := newFixture(t)
	ms := studyMembers("1.2.3.200", 30, 1024)
	ms = append(ms[:15], append([]member{{"junk.txt", []byte("not a DICOM file at all")}}, ms[15:]...)...)
	data := bundle(t, ms)
	_, res := f.upload(t, f.tokA, data)
	if res.Stored != 30 || res.Failed != 1 || len(res.Files) != 31 {
		t.Fatalf("first upload: stored %d, failed %d, %d files", res.Stored, res.Failed, len(res.Files))
	}
	if bad := res.Files[15]; bad.Name != "junk.txt" || bad.Outcome != OutcomeFailed || !strings.Contains(bad.Error, "invalid") {
		t.Fatalf("garbage member: %+v", bad)
	}
	if ins, _ := f.st.Instances(context.Background(), "1.2.3.200", "", ""); len(ins) != 30 {
		t.Fatalf("store has %d instances", len(ins))
	}
	_, res = f.upload(t, f.tokA, data)
	if res.AlreadyStored != 30 || res.Stored != 0 || res.Failed != 1 {
		t.Fatalf("second upload: %+v", res)
	}
	entries, _ := f.trail.List(context.Background(), audit.Filter{Action: "study.upload"})
	if len(entries) != 1 {
		t.Fatalf("audit entries: %d, want 1 (coalesced)", len(entries))
	}
}

func TestUnsupportedContent(t *testing.T) {
	f := newFixture(t)
	_, res := f.upload(t, f.tokA, bytes.Repeat([]byte("x"), 1000))
	if res.Failed != 1 || !strings.Contains(res.Files[0].Error, "415") {
		t.Fatalf("result: %+v", res)
	}
}

// failingReader gives n bytes of data, then fails: the connection drops mid-PATCH.
type failingReader struct {
	data []byte
	n    int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("link dropped")
	}
	k := copy(p, r.data[:min(len(r.data), r.n, len(p))])
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

func TestResume(t *testing.T) {
	f := newFixture(t)
	data := bundle(t, studyMembers("1.2.3.300", 20, 8192))
	url := f.create(t, f.tokA, len(data))
	req, _ := http.NewRequest("PATCH", url, &failingReader{data: data, n: len(data) / 2})
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+f.tokA)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	if resp, err := f.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("broken PATCH answered %d", resp.StatusCode)
	}
	// The server restarts between the break and the resume: what it knows is on disk.
	f.srv.Close()
	f.start(t)
	url = f.srv.URL + url[strings.Index(url, "/api/"):]
	off := f.offset(t, url, f.tokA)
	// How much of the broken PATCH reached the disk depends on timing (nothing, when the
	// client gave up before the server read): anything up to what was sent is right.
	if off < 0 || off > len(data)/2 {
		t.Fatalf("offset after the break: %d of %d sent", off, len(data)/2)
	}
	if resp := f.patch(t, url, f.tokA, off, data[off:]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("resumed PATCH: %d", resp.StatusCode)
	}
	res := f.result(t, url, f.tokA)
	if res.Stored != 20 || res.Failed != 0 {
		t.Fatalf("result: %+v", res)
	}
	if ins, _ := f.st.Instances(context.Background(), "1.2.3.300", "", ""); len(ins) != 20 {
		t.Fatalf("store has %d instances", len(ins))
	}
}

func TestOtherInstitution(t *testing.T) {
	f := newFixture(t)
	data := instance("1.2.3.400", "1.2.3.400.1", "1.2.3.400.1.1", 1024)
	url := f.create(t, f.tokA, len(data))
	f.patch(t, url, f.tokA, 0, data[:100])
	tus := map[string]string{"Tus-Resumable": "1.0.0"}
	if resp := f.do(t, "HEAD", url, f.tokB, tus, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD by another institution: %d", resp.StatusCode)
	}
	if resp := f.patch(t, url, f.tokB, 100, data[100:]); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("PATCH by another institution: %d", resp.StatusCode)
	}
	if resp := f.do(t, "DELETE", url, f.tokB, tus, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE by another institution: %d", resp.StatusCode)
	}
	if resp := f.patch(t, url, f.tokA, 100, data[100:]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH by the creator: %d", resp.StatusCode)
	}
	if resp := f.do(t, "GET", url+"/result", f.tokB, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("result for another institution: %d", resp.StatusCode)
	}
	// Clinic B cannot add to clinic A's study.
	_, res := f.upload(t, f.tokB, instance("1.2.3.400", "1.2.3.400.1", "1.2.3.400.1.2", 1024))
	if res.Failed != 1 || !strings.Contains(res.Files[0].Error, store.ErrUIDInUse.Error()) {
		t.Fatalf("upload into another institution's study: %+v", res)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name  string
		token string
		hdr   map[string]string
		want  int
	}{
		{"no token", "", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10"}, http.StatusUnauthorized},
		{"too large", f.tokA, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": strconv.FormatInt(f.maxSize+1, 10)}, http.StatusRequestEntityTooLarge},
		{"wrong Tus-Resumable", f.tokA, map[string]string{"Tus-Resumable": "0.2.2", "Upload-Length": "10"}, http.StatusPreconditionFailed},
		{"deferred length", f.tokA, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1"}, http.StatusBadRequest},
		{"no length", f.tokA, map[string]string{"Tus-Resumable": "1.0.0"}, http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if resp := f.do(t, "POST", "/api/uploads/", c.token, c.hdr, nil); resp.StatusCode != c.want {
				t.Fatalf("POST: %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
	url := f.create(t, f.tokA, 10)
	if resp := f.do(t, "HEAD", url, "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HEAD without token: %d", resp.StatusCode)
	}
	if resp := f.do(t, "HEAD", "/api/uploads/../etc", f.tokA, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of a bad ID: %d", resp.StatusCode)
	}
	resp := f.do(t, "OPTIONS", "/api/uploads/", "", nil, nil)
	if resp.Header.Get("Tus-Version") != "1.0.0" || !strings.Contains(resp.Header.Get("Tus-Extension"), "creation") ||
		!strings.Contains(resp.Header.Get("Tus-Extension"), "termination") || resp.Header.Get("Tus-Max-Size") != strconv.FormatInt(f.maxSize, 10) {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
}

func BenchmarkBundle(b *testing.B) {
	f := newFixture(b)
	f.maxSize = 1 << 30
	f.start(b)
	const n = 300
	var bytesTotal int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		data := bundle(b, studyMembers(fmt.Sprintf("1.2.3.9%d", i), n, 64<<10))
		b.StartTimer()
		_, res := f.upload(b, f.tokA, data)
		if res.Stored != n {
			b.Fatalf("stored %d of %d", res.Stored, n)
		}
		bytesTotal += int64(len(data))
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N*n)/sec, "instances/s")
	b.ReportMetric(float64(bytesTotal)/1e6/sec, "MB/s")
}

// The server stopped after the last byte was written but before the upload was ingested: a
// resent final PATCH ingests it.
func TestIngestAfterCrash(t *testing.T) {
	f := newFixture(t)
	data := instance("1.2.3.500", "1.2.3.500.1", "1.2.3.500.1.1", 1024)
	url := f.create(t, f.tokA, len(data))
	if resp := f.patch(t, url, f.tokA, 0, data[:len(data)-1]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %d", resp.StatusCode)
	}
	id := url[strings.LastIndex(url, "/")+1:]
	file, err := os.OpenFile(filepath.Join(f.uploadDir, id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	file.Write(data[len(data)-1:])
	file.Close()
	if resp := f.patch(t, url, f.tokA, len(data), nil); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Result") == "" {
		t.Fatalf("resent final PATCH: %d", resp.StatusCode)
	}
	if res := f.result(t, url, f.tokA); res.Stored != 1 {
		t.Fatalf("result: %+v", res)
	}
}
