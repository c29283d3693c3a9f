package server

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/textproto"
	"os"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/internal/dicomtest"
)

// TestUIDCollisionsAcrossInstitutions: a clinic that posts an instance under another clinic's
// Study Instance UID, or another clinic's SOP Instance UID (with the same bytes or others),
// gets a failure that names neither the owner nor anything stored (no hash, no "already
// stored"), nothing of the owner's changes, and a tus upload says no more.
func TestUIDCollisionsAcrossInstitutions(t *testing.T) {
	f := newAuthzFixture(t)
	intruder := f.users["clinic2"]
	f.signIn(intruder)
	ctx := context.Background()
	stored, err := f.st.Instances(ctx, f.studyA.Study, "", "")
	if err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(f.st.FilePath(&stored[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Another image under A's SOP Instance UID in a study of the intruder's own.
	u := dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.99", Series: "1.2.826.0.1.3680043.10.99.1", SOP: f.studyA.SOP}
	elems := append(dicomtest.BaseElems(u, "1.2.840.10008.5.1.4.1.1.7"), dicomtest.ImageElems(8, 8, 8, 0, "MONOCHROME2")...)
	elems = append(elems, dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OB", make([]byte, 64)))
	sameSOP := dicomtest.File{TS: "1.2.840.10008.1.2.1", Elems: elems}.Bytes()
	_, sameStudy := f.instance(f.studyA.Study)

	secrets := []string{"longshan", "龙山", "another institution", "belongs", "already stored", stored[0].SHA256, f.studyA.Series}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"A's Study Instance UID", sameStudy},
		{"A's SOP Instance UID, other bytes", sameSOP},
		{"A's SOP Instance UID, A's very bytes", original},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
			pw.Write(c.body)
			mw.Close()
			status, body := f.do(intruder, "POST", "/dicom-web/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), buf.Bytes(), nil)
			if status != 409 || !strings.Contains(body, "00081198") {
				t.Fatalf("STOW: %d %s", status, body)
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("the answer gives away %q: %s", s, body)
				}
			}
		})
	}
	// The owner's instance is as it was, and A's study has no new instance.
	after, err := f.st.Instances(ctx, f.studyA.Study, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(stored) || after[0].SHA256 != stored[0].SHA256 {
		t.Fatalf("A's study changed: %d instances, %s", len(after), after[0].SHA256)
	}
	if entries, _ := os.ReadDir(f.st.Dir() + "/conflicts"); len(entries) != 0 {
		t.Fatalf("the intruder's bytes were kept in conflicts/: %d files", len(entries))
	}
}
