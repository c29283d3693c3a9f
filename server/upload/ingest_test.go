package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"sanping/protocol"
	"sanping/server/store"
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
	res, err := ingest(context.Background(), f.st, &buf, "bundle.tar", "", store.Target{InstitutionID: f.clinicA})
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
	res, err = ingest(context.Background(), f.st, bytes.NewReader(one), "one.dcm", strings.Repeat("ab", 32), store.Target{InstitutionID: f.clinicA})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 1 || !strings.HasPrefix(res.Files[0].Error, "checksum mismatch: ") {
		t.Fatalf("%+v", res)
	}
	res, err = ingest(context.Background(), f.st, bytes.NewReader(one), "one.dcm", sha256Hex(one), store.Target{InstitutionID: f.clinicA})
	if err != nil || res.Stored != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
}
