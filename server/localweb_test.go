package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/client/localweb"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/internal/dicomtest"
	"github.com/sanping/sanping/server/store"
)

// localStation is a station's local DICOMweb over files of clinic A's, on loopback, checking
// grants with the fixture's county server.
type localStation struct {
	URL string
	srv *localweb.Server
}

func (f *authzFixture) localStation(t *testing.T, dir, token string) *localStation {
	t.Helper()
	ls, err := localweb.Listen(localweb.Config{Addr: "127.0.0.1:0", Server: f.srv.URL, Token: token, Roots: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &localStation{URL: "http://" + ls.Addr(), srv: ls}
}

// keep stores an instance at the county for clinic A and writes the same bytes where the
// station keeps what it sent.
func (f *authzFixture) keep(t *testing.T, dir string, b []byte) {
	t.Helper()
	if _, err := f.st.IngestFor(f.ctx, bytes.NewReader(b), store.Target{InstitutionID: f.inst["A"]}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.dcm", f.seq.Add(1))), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *authzFixture) grant(t *testing.T, u *fixtureUser, study string) string {
	t.Helper()
	var g struct{ Token string }
	if code, body := f.json(u, "POST", "/api/local-grants", map[string]string{"study": study}, &g); code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, body)
	}
	return g.Token
}

func get(t *testing.T, client *http.Client, url string, h map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// parts splits a multipart/related answer into its parts' bodies and content types.
func parts(t *testing.T, res *http.Response, body []byte) (bodies [][]byte, types []string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		t.Fatalf("Content-Type %q", res.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return bodies, types
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		bodies, types = append(bodies, b), append(types, p.Header.Get("Content-Type"))
	}
}

// TestLocalDICOMweb: a station serves its own copies to the clinic's browser with a grant the
// county issues and checks, the same metadata and bit-identical frames as the county.
func TestLocalDICOMweb(t *testing.T) {
	f := newAuthzFixture(t)
	clinic := f.users["clinic"]
	dir := t.TempDir()
	// A study of A's: the fixture's 8-bit instance and a 16-bit two-frame one in another series,
	// stored implicit VR (served as explicit VR little endian by both).
	u8, b8 := f.instance("")
	f.keep(t, dir, b8)
	u16 := dicomtest.UIDs{Study: u8.Study, Series: u8.Series + ".2", SOP: u8.SOP + ".2"}
	elems := append(dicomtest.BaseElems(u16, "1.2.840.10008.5.1.4.1.1.2"), dicomtest.Str(dicomtest.TagOf(0x0008, 0x0060), "CS", "CT"))
	elems = append(elems, dicomtest.ImageElems(16, 16, 16, 2, "MONOCHROME2")...)
	elems = append(elems, dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OW", dicomtest.LE16(dicomtest.Pixels16(2*16*16, 3))))
	f.keep(t, dir, dicomtest.File{TS: "1.2.840.10008.1.2", Elems: elems}.Bytes())
	other := f.upload(clinic.p, "") // another study of A's, not on the station

	_, tokenA, err := f.app.auth.CreateToken(f.ctx, "A 站", f.inst["A"], auth.RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	_, tokenB, err := f.app.auth.CreateToken(f.ctx, "B 站", f.inst["B"], auth.RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	st := f.localStation(t, dir, tokenA)
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, b := get(t, nil, st.URL+"/dicom-web/health", nil)
		if strings.Contains(string(b), `"instances":2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	grant := f.grant(t, clinic, u8.Study)
	bearer := map[string]string{"Authorization": "Bearer " + grant}
	studyPath := "/dicom-web/studies/" + u8.Study

	// No grant: 401; a grant of another study: 403; an unknown grant: 401.
	if res, b := get(t, nil, st.URL+studyPath+"/series", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("no grant: %d %s", res.StatusCode, b)
	}
	if res, b := get(t, nil, st.URL+studyPath+"/series", map[string]string{"Authorization": "Bearer " + f.grant(t, clinic, other.Study)}); res.StatusCode != http.StatusForbidden {
		t.Errorf("another study's grant: %d %s", res.StatusCode, b)
	}
	if res, b := get(t, nil, st.URL+studyPath+"/series", map[string]string{"Authorization": "Bearer spg_made_up"}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown grant: %d %s", res.StatusCode, b)
	}
	// The other study's own grant on its own path: the station has none of it.
	if res, b := get(t, nil, st.URL+"/dicom-web/studies/"+other.Study+"/series", map[string]string{"Authorization": "Bearer " + f.grant(t, clinic, other.Study)}); res.StatusCode != http.StatusNotFound {
		t.Errorf("a study the station lacks: %d %s", res.StatusCode, b)
	}

	// The series list: what the county lists, series by series and instance count.
	res, local := get(t, nil, st.URL+studyPath+"/series", bearer)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/dicom+json" {
		t.Fatalf("series: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), local)
	}
	for _, s := range []string{u8.Series, u16.Series} {
		if !strings.Contains(string(local), `"`+s+`"`) {
			t.Errorf("series %s missing: %s", s, local)
		}
	}

	// Metadata: the county's JSON, base URL aside.
	for _, s := range []string{u8.Series, u16.Series} {
		path := studyPath + "/series/" + s + "/metadata"
		_, county := get(t, clinic.client, f.srv.URL+path, map[string]string{"Accept": "application/dicom+json"})
		res, local := get(t, nil, st.URL+path, bearer)
		county = bytes.ReplaceAll(county, []byte(f.srv.URL), []byte(st.URL))
		if res.StatusCode != http.StatusOK || !bytes.Contains(local, []byte(s)) || !bytes.Equal(bytes.TrimSpace(county), bytes.TrimSpace(local)) {
			t.Errorf("metadata of %s: %d\nlocal  %s\ncounty %s", s, res.StatusCode, local, county)
		}
	}

	// Frames as the viewer asks for them: the same bytes and part types as the county's.
	accept := map[string]string{"Accept": `multipart/related; type="application/octet-stream"; transfer-syntax=*`}
	for _, c := range []struct{ series, sop, frames string }{{u8.Series, u8.SOP, "1"}, {u16.Series, u16.SOP, "2"}, {u16.Series, u16.SOP, "1,2"}} {
		path := studyPath + "/series/" + c.series + "/instances/" + c.sop + "/frames/" + c.frames
		cres, cb := get(t, clinic.client, f.srv.URL+path, accept)
		h := map[string]string{"Authorization": bearer["Authorization"], "Accept": accept["Accept"]}
		lres, lb := get(t, nil, st.URL+path, h)
		if lres.StatusCode != http.StatusOK || cres.StatusCode != http.StatusOK {
			t.Fatalf("frames %s: local %d, county %d: %s", path, lres.StatusCode, cres.StatusCode, lb)
		}
		cparts, ctypes := parts(t, cres, cb)
		lparts, ltypes := parts(t, lres, lb)
		if len(cparts) != len(lparts) || len(lparts) != strings.Count(c.frames, ",")+1 {
			t.Fatalf("frames %s: %d parts here, %d at the county", c.frames, len(lparts), len(cparts))
		}
		for i := range cparts {
			if !bytes.Equal(cparts[i], lparts[i]) || ctypes[i] != ltypes[i] {
				t.Errorf("frame %d of %s differs from the county's (%q vs %q)", i, c.sop, ltypes[i], ctypes[i])
			}
		}
	}

	// CORS: the county's origin only, with Private Network Access on preflights.
	res, _ = get(t, nil, st.URL+studyPath+"/series", map[string]string{"Authorization": bearer["Authorization"], "Origin": f.srv.URL})
	if res.Header.Get("Access-Control-Allow-Origin") != f.srv.URL || !strings.Contains(strings.Join(res.Header.Values("Vary"), ","), "Origin") {
		t.Errorf("county origin: %v", res.Header)
	}
	res, _ = get(t, nil, st.URL+studyPath+"/series", map[string]string{"Authorization": bearer["Authorization"], "Origin": "https://evil.example"})
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin got CORS headers: %v", res.Header)
	}
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", st.URL+studyPath+"/series", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization,accept")
		req.Header.Set("Access-Control-Request-Private-Network", "true")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := preflight(f.srv.URL); res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Private-Network") != "true" ||
		res.Header.Get("Access-Control-Allow-Origin") != f.srv.URL || !strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight from the county: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Private-Network") != "" {
		t.Errorf("preflight from another origin: %d %v", res.StatusCode, res.Header)
	}
	// A page whose name was made to resolve to 127.0.0.1 (DNS rebinding) is refused.
	req, _ := http.NewRequest("GET", st.URL+"/dicom-web/health", nil)
	req.Host = "evil.example"
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %v %v", res, err)
	}

	// Another institution's station learns nothing of A's grants: the county says 403.
	stB := f.localStation(t, dir, tokenB)
	if res, b := get(t, nil, stB.URL+studyPath+"/series", bearer); res.StatusCode != http.StatusForbidden {
		t.Errorf("B's station with A's grant: %d %s", res.StatusCode, b)
	}

	// A non-loopback listen address needs -local-allow-lan.
	if _, err := localweb.Listen(localweb.Config{Addr: "0.0.0.0:0", Server: f.srv.URL}); !errors.Is(err, localweb.ErrNotLoopback) {
		t.Errorf("0.0.0.0: %v", err)
	}
}

// TestLocalGrantVerify: the county's verify answers station tokens of the study's institution
// only, and the grant is in the audit trail as a read.
func TestLocalGrantVerify(t *testing.T) {
	f := newAuthzFixture(t)
	grant := f.grant(t, f.users["clinic"], f.studyA.Study)
	_, tokenA, _ := f.app.auth.CreateToken(f.ctx, "A 站", f.inst["A"], auth.RoleClinic, "admin")
	_, tokenB, _ := f.app.auth.CreateToken(f.ctx, "B 站", f.inst["B"], auth.RoleClinic, "admin")
	_, doctorToken, _ := f.app.auth.CreateToken(f.ctx, "PACS", f.inst["A"], auth.RoleDoctor, "admin")
	verify := func(token, g string) (int, string) {
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/local-grants/verify", strings.NewReader(`{"token":"`+g+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := verify(tokenA, grant); code != http.StatusOK || !strings.Contains(body, `"user":"clinic"`) || !strings.Contains(body, f.studyA.Study) {
		t.Errorf("A's station: %d %s", code, body)
	}
	if code, body := verify(tokenB, grant); code != http.StatusForbidden {
		t.Errorf("B's station: %d %s", code, body)
	}
	if code, body := verify(doctorToken, grant); code != http.StatusForbidden {
		t.Errorf("a doctor's token: %d %s", code, body)
	}
	if code, body := verify(tokenA, "spg_nothing"); code != http.StatusNotFound {
		t.Errorf("unknown grant: %d %s", code, body)
	}
	var page struct {
		Entries []struct{ Action, Object, Actor string }
	}
	if code, body := f.json(f.users["admin"], "GET", "/api/audit?action=study.read.local", nil, &page); code != http.StatusOK || len(page.Entries) != 1 ||
		page.Entries[0].Object != "study:"+f.studyA.Study || page.Entries[0].Actor != "clinic" {
		t.Errorf("audit: %d %s", code, body)
	}
}
