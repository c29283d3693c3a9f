package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sanping/sanping/server/internal/dicomtest"
)

// FuzzSTOW sends arbitrary bodies and Content-Types to STOW-RS. Whatever arrives, the answer is
// one of the statuses PS3.18 names, with a JSON body, and the server keeps serving.
func FuzzSTOW(f *testing.F) {
	valid := dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: dicomtest.BaseElems(dicomtest.UIDs{Study: "1.2.3", Series: "1.2.3.4", SOP: "1.2.3.4.5"}, dicomtest.SOPClassSC)}.Bytes()
	f.Add(stowCT, stowBody("XXBOUNDARYXX", valid))
	f.Add(stowCT, stowBody("XXBOUNDARYXX", valid, []byte("not dicom")))
	f.Add(stowCT, stowBody("XXBOUNDARYXX", valid[:200]))
	f.Add(`multipart/related; type=application/dicom; boundary=b`, stowBody("b", valid))
	f.Add(`multipart/related; boundary=b`, []byte("--b\r\n\r\n--b--"))
	f.Add(`application/dicom`, valid)
	f.Add(``, []byte{})
	e := newEnv(f, 1<<20)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest("POST", e.srv.URL+base+"/studies", bytes.NewReader(body))
		req.RequestURI = ""
		req.Header.Set("Content-Type", contentType)
		req.SetBasicAuth("admin", adminPassword)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return // the client refused to send it (an invalid header value)
		}
		defer res.Body.Close()
		switch res.StatusCode {
		case 200, 202, 400, 409, 413, 415:
		default:
			t.Fatalf("status %d for Content-Type %q", res.StatusCode, contentType)
		}
		var v any
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %v", res.StatusCode, err)
		}
	})
}
