package scp

import (
	"bytes"
	"testing"
)

// BenchmarkCheckDataSet: the check a C-STORE waits for, on a 64 KiB instance.
func BenchmarkCheckDataSet(b *testing.B) {
	ds := append(fileMeta(sopClassSC, "1.2.3.9", tsExplicitLE, "BENCH"), testDataSet(sopClassSC, "1.2.3.9", 64<<10)...)
	rq := command{SOPClass: sopClassSC, SOPInstance: "1.2.3.9"}
	b.ReportAllocs()
	for b.Loop() {
		if st, c := checkDataSet(bytes.NewReader(ds), int64(len(ds)), tsExplicitLE, rq); st != statusSuccess {
			b.Fatal(c)
		}
	}
}
