package dcm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
)

// TestTranscodeToExplicitLEMatchesDCMTK rewrites implicit VR, big endian and deflated files as explicit VR
// little endian and checks the result against DCMTK: after dcmconv normalises both (explicit
// lengths, no group lengths), our output and the original are byte for byte the same data set.
func TestTranscodeToExplicitLEMatchesDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmconv")
	modDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		t.Fatalf("locating suyashkumar/dicom testdata: %v", err)
	}
	testdata := filepath.Join(string(bytes.TrimSpace(modDir)), "testdata")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cases := []struct{ name, src, flag string }{
		{"implicit from 1.dcm", "1.dcm", "+ti"},
		{"implicit from 3.dcm (MR)", "3.dcm", "+ti"},
		{"big endian from 2.dcm", "2.dcm", "+tb"},
		{"big endian from 5.dcm (multi-frame CT)", "5.dcm", "+tb"},
		{"implicit with undefined lengths", "1.dcm", "+ti -e"},
		{"deflated from 1.dcm", "1.dcm", "+td"},
		{"deflated from 5.dcm (multi-frame CT)", "5.dcm", "+td"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := filepath.Join(dir, "in"+itoa(i)+".dcm")
			args := append([]string{"dcmconv"}, splitFlags(c.flag)...)
			run(append(args, filepath.Join(testdata, c.src), in)...)
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			var out bytes.Buffer
			if err := TranscodeToExplicitLE(&out, f, st.Size()); err != nil {
				t.Fatal(err)
			}
			f.Close()
			ours := filepath.Join(dir, "ours"+itoa(i)+".dcm")
			os.WriteFile(ours, out.Bytes(), 0o600)
			// Our output must itself parse, with the right transfer syntax.
			parsed, err := Parse(bytes.NewReader(out.Bytes()), int64(out.Len()))
			if err != nil {
				t.Fatalf("our output does not parse: %v", err)
			}
			if parsed.TransferSyntax != ExplicitVRLittleEndian {
				t.Fatalf("transfer syntax %s", parsed.TransferSyntax)
			}
			a, b := filepath.Join(dir, "a"+itoa(i)+".dcm"), filepath.Join(dir, "b"+itoa(i)+".dcm")
			run("dcmconv", "+te", "+e", "-g", in, a)
			run("dcmconv", "+te", "+e", "-g", ours, b)
			da, _ := os.ReadFile(a)
			db, _ := os.ReadFile(b)
			if !bytes.Equal(da, db) {
				dump := func(p string) string { o, _ := exec.Command("dcmdump", "-q", p).CombinedOutput(); return string(o) }
				t.Fatalf("normalised files differ (%d vs %d bytes)\noriginal:\n%.3000s\nours:\n%.3000s", len(da), len(db), dump(a), dump(b))
			}
		})
	}
}

func splitFlags(s string) []string { return bytes2strings(bytes.Fields([]byte(s))) }

func bytes2strings(b [][]byte) []string {
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}

func itoa(i int) string { return string(rune('0' + i)) }
