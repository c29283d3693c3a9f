package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/store"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestIngestChecksum: a member whose content is not what its SHA-256 record says is not
// stored and fails alone; members with a right record, and without one, are stored.
func TestIngestChecksum(t *testing.T) {
	f := newFixture(t)
	ms := studyMembers("1.2.3.700", 4, 2048)
	sums := []string{sha256Hex(ms[0].data), sha256Hex(ms[1].data), "", sha256Hex(ms[3].data)}
	damaged := bytes.Clone(ms[1].data)
	damaged[len(damaged)-10] ^= 0xff // in the pixel data: still a valid instance
	ms[1].data = damaged

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, m := range ms {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if sums[i] != "" {
			h.PAXRecords = map[string]string{protocol.TarSHA256: sums[i]}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := ingest(context.Background(), f.st, &buf, "bundle.tar", "", store.Target{InstitutionID: f.clinicA}, 4<<30)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 3 || res.Failed != 1 || len(res.Files) != 4 {
		t.Fatalf("%+v", res)
	}
	bad := res.Files[1]
	if bad.Name != ms[1].name || bad.Outcome != OutcomeFailed || !strings.HasPrefix(bad.Error, "checksum mismatch: ") ||
		!strings.Contains(bad.Error, sums[1]) || !strings.Contains(bad.Error, sha256Hex(damaged)) {
		t.Fatalf("%+v", bad)
	}
	inst, err := f.st.Instances(context.Background(), "1.2.3.700", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) != 3 {
		t.Fatalf("%d instances stored", len(inst))
	}
	for _, in := range inst {
		if in.SOPUID == "1.2.3.700.1.2" {
			t.Fatalf("the damaged instance is stored: %+v", in)
		}
	}

	// A single Part 10 file with the sum in its upload's metadata is checked the same way.
	one := instance("1.2.3.701", "1.2.3.701.1", "1.2.3.701.1.1", 512)
	res, err = ingest(context.Background(), f.st, bytes.NewReader(one), "one.dcm", strings.Repeat("ab", 32), store.Target{InstitutionID: f.clinicA}, 4<<30)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 1 || !strings.HasPrefix(res.Files[0].Error, "checksum mismatch: ") {
		t.Fatalf("%+v", res)
	}
	res, err = ingest(context.Background(), f.st, bytes.NewReader(one), "one.dcm", sha256Hex(one), store.Target{InstitutionID: f.clinicA}, 4<<30)
	if err != nil || res.Stored != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// countingStore counts the bytes the store is handed.
type countingStore struct {
	instanceStore
	n int64
}

func (c *countingStore) IngestFor(ctx context.Context, r io.Reader, t store.Target) (*store.Result, error) {
	cr := &countReader{r: r}
	res, err := c.instanceStore.IngestFor(ctx, cr, t)
	c.n += cr.n
	return res, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestIngestRefusesExpandingMembers: a 2 KiB sparse member claiming 400 MiB, a symlink and a
// member over the instance limit fail alone, before the store reads a byte of them; the
// instance after them is stored.
func TestIngestRefusesExpandingMembers(t *testing.T) {
	f := newFixture(t)
	ms := studyMembers("1.2.3.701", 1, 2048)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// PAX sparse format 1.0: the data begins with the map (one chunk of 512 bytes at offset
	// 0), then the chunk; the file it stands for is 400 MiB of zeros.
	sparseMap := make([]byte, 512)
	copy(sparseMap, "1\n0\n512\n")
	sparse := append(sparseMap, make([]byte, 512)...)
	members := []struct {
		h    tar.Header
		data []byte
	}{
		{tar.Header{Name: "holes.dcm", Typeflag: tar.TypeReg, Size: int64(len(sparse)), Format: tar.FormatPAX,
			// Go's writer will not write GNU.sparse records: written under another name of the
			// same length, renamed in the bytes below (PAX records carry no checksum).
			PAXRecords: map[string]string{"ZZZ.sparse.major": "1", "ZZZ.sparse.minor": "0", "ZZZ.sparse.name": "holes.dcm", "ZZZ.sparse.realsize": "419430400"}}, sparse},
		{tar.Header{Name: "link.dcm", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, nil},
		{tar.Header{Name: "big.dcm", Typeflag: tar.TypeReg, Size: 8192}, make([]byte, 8192)},
		{tar.Header{Name: ms[0].name, Typeflag: tar.TypeReg, Size: int64(len(ms[0].data))}, ms[0].data},
	}
	for _, m := range members {
		h := m.h
		h.Mode = 0o644
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	archive := bytes.ReplaceAll(buf.Bytes(), []byte("ZZZ.sparse."), []byte("GNU.sparse."))
	// Go's reader takes it for what it is: 400 MiB from 1 KiB.
	if h, err := tar.NewReader(bytes.NewReader(archive)).Next(); err != nil || h.Size != 419430400 {
		t.Fatalf("the sparse member reads as %v, %v", h, err)
	}
	cs := &countingStore{instanceStore: f.st}
	res, err := ingest(context.Background(), cs, bytes.NewReader(archive), "bundle.tar", "", store.Target{InstitutionID: f.clinicA}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 1 || res.Failed != 3 || len(res.Files) != 4 {
		t.Fatalf("%+v", res)
	}
	for i, want := range []string{"sparse", "not a regular file", "larger than one instance"} {
		if fr := res.Files[i]; fr.Outcome != OutcomeFailed || !strings.Contains(fr.Error, want) {
			t.Errorf("member %d: %+v, want a failure saying %q", i, fr, want)
		}
	}
	if cs.n != int64(len(ms[0].data)) {
		t.Fatalf("the store read %d bytes; only the valid instance's %d should reach it", cs.n, len(ms[0].data))
	}
}
