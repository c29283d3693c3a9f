package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cutPatch sends data from offset off in a PATCH whose body breaks after n bytes (the link
// drops), and returns the offset the server then reports.
func (f *fixture) cutPatch(t *testing.T, url string, data []byte, off, n int) int {
	t.Helper()
	req, _ := http.NewRequest("PATCH", url, &failingReader{data: data[off:], n: n})
	req.ContentLength = int64(len(data) - off)
	req.Header.Set("Authorization", "Bearer "+f.tokA)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", fmt.Sprint(off))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	if resp, err := f.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("broken PATCH answered %d", resp.StatusCode)
	}
	return f.offset(t, url, f.tokA)
}

// resume sends the rest of data as a client does after a cut: HEAD for the offset, PATCH from
// there; a 409 (the PATCH cut is still being handled, and the offset moved meanwhile) means
// ask again.
func (f *fixture) resume(t *testing.T, url string, data []byte) {
	t.Helper()
	for range 50 {
		off := f.offset(t, url, f.tokA)
		resp := f.patch(t, url, f.tokA, off, data[off:])
		switch resp.StatusCode {
		case http.StatusNoContent:
			return
		case http.StatusConflict:
			time.Sleep(20 * time.Millisecond)
			continue
		}
		t.Fatalf("resumed PATCH: %d", resp.StatusCode)
	}
	t.Fatal("the offset never settled")
}

// memberStarts lists where each member's first header block starts in a tar, and its end.
func memberStarts(t *testing.T, data []byte) (starts []int) {
	t.Helper()
	r := bytes.NewReader(data)
	tr := tar.NewReader(r)
	prev := 0
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		starts = append(starts, prev)
		prev = len(data) - r.Len() + int((h.Size+511)/512*512)
	}
	return starts
}

// TestStreamCuts: the first PATCH of a tar is ingested as it arrives. Cut anywhere (inside a
// member, exactly at a member boundary, inside the padding after a member's data, inside a
// header), the upload resumes from the offset the server reports and ends with every instance
// stored once and named in the result, none failed.
func TestStreamCuts(t *testing.T) {
	f := newFixture(t)
	ms := studyMembers("1.2.3.400", 12, 5000)
	data := bundle(t, ms)
	starts := memberStarts(t, data)
	if len(starts) != 12 {
		t.Fatalf("%d members found", len(starts))
	}
	cuts := map[string]int{
		"inside a member":      starts[4] + 3000,
		"at a member boundary": starts[5],
		"inside padding":       starts[6] - 100,
		"inside a header":      starts[7] + 200,
		"in the first header":  100,
		"before the end":       len(data) - 700,
	}
	for name, cut := range cuts {
		t.Run(name, func(t *testing.T) {
			study := fmt.Sprintf("1.2.3.4%02d", cut%97)
			ms := studyMembers(study, 12, 5000)
			data := bundle(t, ms)
			url := f.create(t, f.tokA, len(data))
			off := f.cutPatch(t, url, data, 0, cut)
			if off < 0 || off > cut {
				t.Fatalf("offset %d after a cut at %d", off, cut)
			}
			f.resume(t, url, data)
			res := f.result(t, url, f.tokA)
			if res.Stored != 12 || res.Failed != 0 || len(res.Files) != 12 {
				t.Fatalf("result: %+v", res)
			}
			for i, fr := range res.Files {
				if fr.Name != ms[i].name || fr.Outcome != OutcomeStored {
					t.Errorf("file %d: %+v", i, fr)
				}
			}
			if ins, _ := f.st.Instances(context.Background(), study, "", ""); len(ins) != 12 {
				t.Fatalf("store has %d instances", len(ins))
			}
		})
	}
}

// TestStreamLargeMember: a member larger than what is held in memory (or just as large, its
// headers tipping it over), cut in its middle, goes to the data file as it arrives, so the
// resume sends only the rest.
func TestStreamLargeMember(t *testing.T) {
	f := newFixture(t)
	for i, size := range []int{streamBufLimit + 3<<20, streamBufLimit - 600} {
		study := fmt.Sprintf("1.2.3.50%d", i)
		ms := studyMembers(study, 2, 1000)
		ms = append(ms, member{"big.dcm", instance(study, study+".1", study+".1.9", size)})
		data := bundle(t, ms)
		url := f.create(t, f.tokA, len(data))
		cut := len(data) - 2<<20
		if size < streamBufLimit {
			cut = len(data) - 1024 // after the member, in the end of the archive
		}
		off := f.cutPatch(t, url, data, 0, cut)
		if off < cut-(1<<20) {
			t.Fatalf("offset %d after a cut at %d: the big member's bytes were not kept", off, cut)
		}
		f.resume(t, url, data)
		if res := f.result(t, url, f.tokA); res.Stored != 3 || res.Failed != 0 {
			t.Fatalf("member of %d bytes: result: %+v", size, res)
		}
	}
}

// TestStreamBadTar: a tar broken after its first members: those are stored, the break is
// reported, nothing else is; a member whose checksum record is wrong fails alone.
func TestStreamBadTar(t *testing.T) {
	f := newFixture(t)
	ms := studyMembers("1.2.3.600", 3, 2000)
	good := bundle(t, ms)
	starts := memberStarts(t, good)
	broken := append(bytes.Clone(good[:starts[2]]), bytes.Repeat([]byte("garbage!"), 200)...)
	_, res := f.upload(t, f.tokA, broken)
	if res.Stored != 2 || res.Failed != 1 || !strings.Contains(res.Files[2].Error, "tar") {
		t.Fatalf("result: %+v", res)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, m := range studyMembers("1.2.3.601", 3, 2000) {
		sum := sha256Hex(m.data)
		if i == 1 {
			sum = sha256Hex(append(m.data, 0))
		}
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg,
			PAXRecords: map[string]string{"SANPING.sha256": sum}})
		tw.Write(m.data)
	}
	tw.Close()
	_, res = f.upload(t, f.tokA, buf.Bytes())
	if res.Stored != 2 || res.Failed != 1 || !strings.HasPrefix(res.Files[1].Error, "checksum mismatch") {
		t.Fatalf("result: %+v", res)
	}
	if ins, _ := f.st.Instances(context.Background(), "1.2.3.601", "", ""); len(ins) != 2 {
		t.Fatalf("store has %d instances", len(ins))
	}
}

// TestCreationWithUpload: tus's creation-with-upload (the POST carries the first bytes, as
// tus-js-client can send them) streams a tar as a first PATCH does: whole, or in part and
// the rest by PATCH.
func TestCreationWithUpload(t *testing.T) {
	f := newFixture(t)
	for _, part := range []bool{false, true} {
		study := "1.2.3.800"
		if part {
			study = "1.2.3.801"
		}
		data := bundle(t, studyMembers(study, 6, 3000))
		first := data
		if part {
			first = data[:len(data)/2]
		}
		resp := f.do(t, "POST", "/api/uploads/", f.tokA, map[string]string{"Tus-Resumable": "1.0.0",
			"Upload-Length": strconv.Itoa(len(data)), "Content-Type": "application/offset+octet-stream"}, bytes.NewReader(first))
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Upload-Offset") != strconv.Itoa(len(first)) {
			t.Fatalf("POST with %d bytes: %d, offset %q", len(first), resp.StatusCode, resp.Header.Get("Upload-Offset"))
		}
		url := resp.Header.Get("Location")
		if part {
			f.resume(t, url, data)
		}
		if res := f.result(t, url, f.tokA); res.Stored != 6 || res.Failed != 0 {
			t.Fatalf("result: %+v", res)
		}
	}
}
