package store_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
	"github.com/sanping/sanping/server/store"
)

// TestMetaMismatchStoredMended: a file whose File Meta Information names another SOP Instance
// than its data set (written so by some modalities and converters) is stored under the data
// set's SOP Instance UID, with the meta information corrected and a warning; the data set
// itself is stored byte for byte, and DCMTK reads the stored file as consistent.
func TestMetaMismatchStoredMended(t *testing.T) {
	st, _ := newStore(t)
	u := dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.61", Series: "1.2.826.0.1.3680043.10.61.1", SOP: "1.2.826.0.1.3680043.10.61.1.1"}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(4, 4, 8, 0, "MONOCHROME2")...)
	elems = append(elems, dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OB", make([]byte, 16)))
	sent := dicomtest.File{TS: dicomtest.TSExplicitLE, MetaSOPInstance: "9.9.9.9", Elems: elems}.Bytes()
	if _, err := dcm.Parse(bytes.NewReader(sent), int64(len(sent))); err == nil {
		t.Fatal("the test file is not mismatched")
	}

	res, err := st.IngestFor(context.Background(), bytes.NewReader(sent), store.Target{})
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if res.Outcome != store.Stored || res.SOPInstanceUID != u.SOP || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], u.SOP) {
		t.Fatalf("result %+v", res)
	}
	list, err := st.Instances(context.Background(), u.Study, "", u.SOP)
	if err != nil {
		t.Fatal(err)
	}
	path := st.FilePath(&list[0])
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := dcm.Parse(bytes.NewReader(stored), int64(len(stored)))
	if err != nil {
		t.Fatalf("the stored file does not parse: %v", err)
	}
	if in.Meta.MediaStorageSOPInstanceUID != u.SOP {
		t.Fatalf("stored meta names %q", in.Meta.MediaStorageSOPInstanceUID)
	}
	_, sentOffset, err := dcm.ReadMeta(bytes.NewReader(sent), int64(len(sent)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored[in.Layout.DatasetOffset:], sent[sentOffset:]) {
		t.Fatal("the data set was changed")
	}
	if testtool.Want(t, testtool.DCMTK, "dcmdump") {
		out, err := exec.Command("dcmdump", "-M", "+P", "0002,0003", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), u.SOP) {
			t.Fatalf("dcmdump: %v\n%s", err, out)
		}
	}
}
