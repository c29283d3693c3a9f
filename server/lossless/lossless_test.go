package lossless_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/lossless"
	"github.com/sanping/sanping/server/store"
)

// libraryFile is a file of suyashkumar/dicom's testdata: 3.dcm is a 12-bit MR (explicit VR
// little endian), 4.dcm a 10-bit CR (implicit VR, 7.5 MB), 5.dcm a two-frame CT.
func libraryFile(t *testing.T, name string) string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		t.Fatalf("locating suyashkumar/dicom testdata: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(dir)), "testdata", name)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// transcode is our JPEG-LS lossless rewriting of the file at path, as the station sends it.
func transcode(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dcm.TranscodeJPEGLS(&out, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "ours.dcm")
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// onePixelChanged is a copy of the native file at path with the last sample one higher.
func onePixelChanged(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	v := in.Layout.Pixel.Value
	at := v.Offset + v.Length - 2
	binary.LittleEndian.PutUint16(b[at:], binary.LittleEndian.Uint16(b[at:])^1)
	dst := filepath.Join(t.TempDir(), "changed.dcm")
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// pair: first is stored, then is sent; want is what the store answers.
type pair struct {
	name        string
	first, then func(t *testing.T) string
	want        store.Outcome
}

// TestStoreSameInstance: an image and its lossless transcoding, sent in either order, are one
// instance (AlreadyStored, the first kept); a pixel or an attribute changed is a Conflict.
func TestStoreSameInstance(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpls", "dcmodify")
	tmp := t.TempDir()
	var cases []pair
	for _, base := range []string{"3.dcm", "4.dcm", "5.dcm"} {
		native := libraryFile(t, base)
		dcmtkLS := filepath.Join(tmp, "dcmcjpls-"+base)
		run(t, "dcmcjpls", native, dcmtkLS)
		renamed := filepath.Join(tmp, "renamed-"+base)
		run(t, "cp", native, renamed)
		run(t, "dcmodify", "-nb", "-ma", "(0010,0010)=Wang^Fang", renamed)
		file := func(p string) func(*testing.T) string { return func(*testing.T) string { return p } }
		cases = append(cases,
			pair{base + ": native, then ours", file(native), func(t *testing.T) string { return transcode(t, native) }, store.AlreadyStored},
			pair{base + ": native, then dcmcjpls", file(native), file(dcmtkLS), store.AlreadyStored},
			pair{base + ": ours, then native", func(t *testing.T) string { return transcode(t, native) }, file(native), store.AlreadyStored},
			pair{base + ": native, then ours of one pixel changed", file(native), func(t *testing.T) string { return transcode(t, onePixelChanged(t, native)) }, store.Conflict},
			pair{base + ": native, then ours of another Patient's Name", file(native), func(t *testing.T) string { return transcode(t, renamed) }, store.Conflict},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), SameInstance: lossless.SameInstance})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ingest := func(path string) *store.Result {
				t.Helper()
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				res, err := st.Ingest(ctx, f, "")
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			first := ingest(c.first(t))
			if first.Outcome != store.Stored {
				t.Fatalf("first: %+v", first)
			}
			res := ingest(c.then(t))
			if res.Outcome != c.want {
				t.Fatalf("then: outcome %d, want %d; %q", res.Outcome, c.want, res.Warnings)
			}
			if c.want == store.AlreadyStored && (len(res.Warnings) == 0 || !strings.Contains(res.Warnings[len(res.Warnings)-1], "another transfer syntax")) {
				t.Errorf("no note of the other transfer syntax: %q", res.Warnings)
			}
			// The first stays, whatever came second.
			ins, err := st.Instances(ctx, first.StudyInstanceUID, "", "")
			if err != nil || len(ins) != 1 || ins[0].SHA256 != first.SHA256 {
				t.Fatalf("stored: %+v, %v; want the first (%s)", ins, err, first.SHA256)
			}
		})
	}
}
