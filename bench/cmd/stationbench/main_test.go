package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// part10 is a preamble, "DICM" and a file meta group of (tag, VR, value) elements.
func part10(elems ...[3]string) []byte {
	b := append(make([]byte, 128), "DICM"...)
	for _, e := range elems {
		var tag [4]byte
		copy(tag[:], e[0])
		b = append(b, tag[:]...)
		b = append(b, e[1]...)
		if e[1] == "OB" {
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(e[2])))
		} else {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(e[2])))
		}
		b = append(b, e[2]...)
	}
	return b
}

func TestMetaSOPInstance(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want string // "" = an error
	}{
		{"after OB and UI", part10(
			[3]string{"\x02\x00\x01\x00", "OB", "\x00\x01"},
			[3]string{"\x02\x00\x02\x00", "UI", "1.2.840.10008.5.1.4.1.1.2\x00"},
			[3]string{"\x02\x00\x03\x00", "UI", "2.25.123\x00"},
		), "2.25.123"},
		{"missing", part10([3]string{"\x02\x00\x02\x00", "UI", "1.2\x00"}, [3]string{"\x08\x00\x18\x00", "UI", "2.25.9\x00"}), ""},
		{"truncated", part10([3]string{"\x02\x00\x03\x00", "UI", "2.25.123\x00"})[:140], ""},
		{"not part 10", make([]byte, 200), ""},
	}
	for _, tc := range tests {
		got, err := metaSOPInstance(tc.file)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %q, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestReadRunsAndMedian(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.tsv")
	data := "scp-ct\tclient-scp\t1\t1\t300\t314819400\t0.9400\t0.32\t5.40\n" +
		"scp-ct\tstorescp\t1\t2\t300\t314819400\t0.6600\t0.29\t5.41\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := readRuns(path)
	if err != nil || len(runs) != 2 {
		t.Fatalf("readRuns: %v, %d runs", err, len(runs))
	}
	if r := runs[1]; r.tool != "storescp" || r.files != 300 || r.seconds != 0.66 || r.load1 != 5.41 {
		t.Errorf("second run: %+v", r)
	}
	if err := os.WriteFile(path, []byte("scp-ct\tstorescp\t1\t2\t300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readRuns(path); err == nil {
		t.Error("a short line was accepted")
	}
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
