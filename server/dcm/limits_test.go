package dcm_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// TestDeflateBombIsRefused: a deflated data set that inflates to more than the limit (here a
// 600 MB OB value from ~600 KB of input) fails as malformed instead of being read into memory.
func TestDeflateBombIsRefused(t *testing.T) {
	var file bytes.Buffer
	file.Write(make([]byte, 128))
	file.WriteString("DICM")
	file.Write(dicomtest.Meta(dicomtest.TSDeflated, dicomtest.SOPClassSC, "1.2.3.4", true))
	zw, _ := flate.NewWriter(&file, flate.BestSpeed)
	zw.Write(dicomtest.ExplicitLE(dicomtest.BaseElems(dicomtest.UIDs{Study: "1.2", Series: "1.2.3", SOP: "1.2.3.4"}, dicomtest.SOPClassSC)))
	const size = 600 << 20
	h := []byte{0x09, 0x00, 0x10, 0x10, 'O', 'B', 0, 0}
	h = binary.LittleEndian.AppendUint32(h, size)
	zw.Write(h)
	zeros := make([]byte, 1<<20)
	for range size >> 20 {
		zw.Write(zeros)
	}
	zw.Close()
	t.Logf("deflated file of %d KB claims a %d MB value", file.Len()>>10, size>>20)
	_, err := dcm.Parse(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if !errors.Is(err, dcm.ErrMalformed) || !strings.Contains(err.Error(), "inflates to more than") {
		t.Fatalf("Parse: %v, want ErrMalformed for the inflated size", err)
	}
}
