package scp

import (
	"bytes"
	"testing"
)

// FuzzCheckDataSet: whatever a modality sends as a data set, in any accepted transfer syntax,
// the check answers without panicking, and success only for a data set naming the command's
// SOP Instance.
func FuzzCheckDataSet(f *testing.F) {
	f.Add(testDataSet(sopClassSC, "1.2.3.9", 300), uint8(0))
	f.Add(testDataSet(sopClassSC, "1.2.3.9", 300), uint8(1))
	f.Add([]byte("%PDF-1.4"), uint8(2))
	f.Add([]byte{}, uint8(3))
	syntaxes := []string{tsExplicitLE, tsImplicitLE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
	f.Fuzz(func(t *testing.T, ds []byte, which uint8) {
		ts := syntaxes[int(which)%len(syntaxes)]
		rq := command{SOPClass: sopClassSC, SOPInstance: "1.2.3.9"}
		part10 := append(fileMeta(rq.SOPClass, rq.SOPInstance, ts, "FUZZ"), ds...) // as the SCP stores it
		status, comment := checkDataSet(bytes.NewReader(part10), int64(len(part10)), ts, rq)
		if status == statusSuccess && !bytes.Contains(ds, []byte("1.2.3.9")) && ts != "1.2.840.10008.1.2.1.99" {
			t.Fatalf("accepted a data set without the command's SOP Instance UID (%s)", ts)
		}
		if status != statusSuccess && comment == "" {
			t.Fatal("a refusal without a reason")
		}
	})
}
