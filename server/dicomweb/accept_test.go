package dicomweb

import (
	"strings"
	"testing"
)

func TestNegotiateFrames(t *testing.T) {
	const jpeg = "1.2.840.10008.1.2.4.50"
	const explicit = "1.2.840.10008.1.2.1"
	cases := []struct {
		accept, stored string
		encapsulated   bool
		ts, part       string
		single, ok     bool
	}{
		{"", explicit, false, explicit, "application/octet-stream", false, true},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, jpeg, true, jpeg, "application/octet-stream", false, true},
		{`multipart/related; type=application/octet-stream`, "1.2.840.10008.1.2", false, explicit, "application/octet-stream", false, true},
		{`multipart/related; type="image/jpeg"`, jpeg, true, jpeg, "image/jpeg", false, true},
		{`multipart/related; type="image/x-dicom-rle"`, "1.2.840.10008.1.2.5", true, "1.2.840.10008.1.2.5", "image/x-dicom-rle", false, true},
		{`application/octet-stream`, explicit, false, explicit, "application/octet-stream", true, true},
		{`multipart/related; type="image/jpeg"`, explicit, false, "", "", false, false},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.70`, jpeg, true, "", "", false, false},
		{`image/png`, explicit, false, "", "", false, false},
		{`*/*`, jpeg, true, jpeg, "application/octet-stream", false, true},
		{`image/png;q=0.9, multipart/related; type="application/octet-stream"; q=0.5`, explicit, false, explicit, "application/octet-stream", false, true},
	}
	for _, c := range cases {
		ts, part, single, ok := negotiateFrames(c.accept, c.stored, c.encapsulated)
		if ts != c.ts || part != c.part || single != c.single || ok != c.ok {
			t.Errorf("negotiateFrames(%q, %s) = %q %q %v %v, want %q %q %v %v", c.accept, c.stored, ts, part, single, ok, c.ts, c.part, c.single, c.ok)
		}
	}
}

func TestAcceptableDICOM(t *testing.T) {
	const rle = "1.2.840.10008.1.2.5"
	cases := []struct {
		accept string
		want   []string // nil: not acceptable
	}{
		{"", []string{""}},
		{"*/*", []string{""}},
		{`multipart/related; type="application/dicom"`, []string{""}},
		{`multipart/related; type=application/dicom; transfer-syntax=*`, []string{"*"}},
		{`multipart/related; type="application/dicom"; transfer-syntax=` + rle, []string{rle}},
		{`multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5, multipart/related; type="application/dicom"; transfer-syntax=` + rle, []string{rle, "*"}},
		{`multipart/related; type="application/dicom"; transfer-syntax=*; q=0`, nil},
		{`multipart/related; type="application/octet-stream"`, nil},
		{`image/png, */*; q=0.1`, []string{""}},
	}
	for _, c := range cases {
		got, ok := acceptableDICOM(c.accept)
		if ok != (c.want != nil) || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("acceptableDICOM(%q) = %q %v, want %q", c.accept, got, ok, c.want)
		}
	}
}

// FuzzAccept: Accept headers from any client parse without panicking.
func FuzzAccept(f *testing.F) {
	for _, s := range []string{`multipart/related; type="application/dicom"; transfer-syntax=*`,
		`multipart/related; type=application/octet-stream, image/jpeg;q=0.5`, `*/*`, `a/b; c="d,e"; q=x`, `;;,,"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for _, m := range parseAccept(h) {
			m.partType()
		}
		negotiateFrames(h, "1.2.840.10008.1.2.4.50", true)
		acceptableDICOM(h)
		acceptsJSON(h)
	})
}
