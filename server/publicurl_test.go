package server

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/auth"
)

// TestPublicURLNotHost: with -public-url set, the URLs in answers (a tus upload's Location,
// STOW-RS RetrieveURLs, BulkDataURIs in metadata) are made from it; a forged Host header is
// not reflected into them.
func TestPublicURLNotHost(t *testing.T) {
	const public = "https://pacs.dahua.example:8443"
	f := newAuthzFixtureWith(t, Config{PublicURL: public})
	// A station's token (a forged Host does not carry the browser's cookie along).
	_, token, err := f.app.auth.CreateToken(f.ctx, "station", f.inst["A"], auth.RoleClinic, "test")
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, contentType string, body []byte, hdr http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
		req.Host = "evil.example"
		req.Header.Set("Authorization", "Bearer "+token)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	uids, inst := f.instance("")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	pw.Write(inst)
	mw.Close()
	res, body := send("POST", "/dicom-web/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), buf.Bytes(), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, public+"/dicom-web/studies/"+uids.Study) || strings.Contains(body, "evil.example") {
		t.Fatalf("STOW: %d %s", res.StatusCode, body)
	}
	res, body = send("GET", "/dicom-web/studies/"+uids.Study+"/metadata", "", nil, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `"BulkDataURI":"`+public+"/dicom-web/") || strings.Contains(body, "evil.example") {
		t.Fatalf("metadata: %d %s", res.StatusCode, body)
	}
	res, body = send("POST", "/api/uploads/", "", nil, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"1024"}})
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, public+"/api/uploads/") {
		t.Fatalf("tus create: %d Location %q %s", res.StatusCode, loc, body)
	}
}
