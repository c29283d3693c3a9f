package upload

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStreamLeavesNoData: a streamed upload cut just before its end has a data file as long as
// what arrived, holding on disk hardly any of it (the members went to the store).
func TestStreamLeavesNoData(t *testing.T) {
	f := newFixture(t)
	data := bundle(t, studyMembers("1.2.3.700", 5, 200000))
	url := f.create(t, f.tokA, len(data))
	id := url[strings.LastIndex(url, "/")+1:]
	off := f.cutPatch(t, url, data, 0, len(data)-600)
	// The cut PATCH may still be handled when the client asks (HEAD): ask until it is done.
	for deadline := time.Now().Add(10 * time.Second); off < len(data)-2048 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		off = f.offset(t, url, f.tokA)
	}
	fi, err := os.Stat(filepath.Join(f.uploadDir, id))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(off) || off < len(data)-2048 {
		t.Fatalf("data file of %d bytes, offset %d, of %d", fi.Size(), off, len(data))
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 64<<10 {
		t.Errorf("the data file holds %d bytes on disk for %d streamed", used, off)
	}
	f.resume(t, url, data)
	if res := f.result(t, url, f.tokA); res.Stored != 5 || res.Failed != 0 {
		t.Fatalf("result: %+v", res)
	}
}
