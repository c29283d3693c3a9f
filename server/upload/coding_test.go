package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/store"
)

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// codedBundle is a tar of ms, each zstd-coded with its records.
func codedBundle(tb testing.TB, ms []member) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		z := zstdBytes(tb, m.data)
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(z)), Typeflag: tar.TypeReg, Format: tar.FormatPAX,
			PAXRecords: map[string]string{protocol.TarCoding: protocol.CodingZstd, protocol.TarSize: strconv.Itoa(len(m.data)), protocol.TarSHA256: sha256Hex(m.data)}}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		tw.Write(z)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestIngestCoded: a zstd member is decoded and stored; a member of an unknown coding, one
// whose decoding is not its declared size or SHA-256, and a small member declaring more than
// an instance may be (a zip bomb) fail alone, with nothing of them stored. After each, the
// next member is read (the tar reader stands at the failed member's end).
func TestIngestCoded(t *testing.T) {
	f := newFixture(t)
	const maxInstance = 1 << 20
	ms := studyMembers("1.2.3.720", 7, 4096)
	type coded struct {
		data    []byte
		records map[string]string
	}
	zst := func(i int, size int, sum string) coded {
		return coded{zstdBytes(t, ms[i].data), map[string]string{protocol.TarCoding: protocol.CodingZstd,
			protocol.TarSize: strconv.Itoa(size), protocol.TarSHA256: sum}}
	}
	bomb := make([]byte, 64<<20) // 64 MiB of zeros: a few KiB of zstd
	members := []coded{
		zst(0, len(ms[0].data), sha256Hex(ms[0].data)),
		{zstdBytes(t, ms[1].data), map[string]string{protocol.TarCoding: "brotli", protocol.TarSize: strconv.Itoa(len(ms[1].data)), protocol.TarSHA256: sha256Hex(ms[1].data)}},
		zst(2, len(ms[2].data)-1, sha256Hex(ms[2].data)), // declares one byte fewer
		zst(3, len(ms[3].data)+1, sha256Hex(ms[3].data)), // one byte more
		zst(4, len(ms[4].data), sha256Hex(ms[3].data)),   // another file's sum
		{zstdBytes(t, bomb), map[string]string{protocol.TarCoding: protocol.CodingZstd, protocol.TarSize: strconv.Itoa(len(bomb)), protocol.TarSHA256: sha256Hex(bomb)}},
		{ms[6].data, map[string]string{protocol.TarSHA256: sha256Hex(ms[6].data)}},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, m := range members {
		h := &tar.Header{Name: ms[i].name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX, PAXRecords: m.records}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := ingest(context.Background(), f.st, &buf, "bundle.tar", "", store.Target{InstitutionID: f.clinicA}, maxInstance)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ outcome, err string }{
		{OutcomeStored, ""},
		{OutcomeFailed, `coded as "brotli"`},
		{OutcomeFailed, "decodes to more than"},
		{OutcomeFailed, "fewer than it declares"},
		{OutcomeFailed, "checksum mismatch"},
		{OutcomeFailed, "larger than one instance may be"},
		{OutcomeStored, ""},
	}
	if len(res.Files) != len(want) {
		t.Fatalf("%+v", res)
	}
	for i, w := range want {
		got := res.Files[i]
		if got.Name != ms[i].name || got.Outcome != w.outcome || !strings.Contains(got.Error, w.err) {
			t.Errorf("member %d: %+v, want %s %q", i, got, w.outcome, w.err)
		}
	}
	inst, err := f.st.Instances(context.Background(), "1.2.3.720", "", "")
	if err != nil || len(inst) != 2 {
		t.Fatalf("%d instances stored (%v), want 2", len(inst), err)
	}
	for _, in := range inst {
		if in.SHA256 != sha256Hex(ms[0].data) && in.SHA256 != sha256Hex(ms[6].data) {
			t.Errorf("stored %+v", in)
		}
	}
}
