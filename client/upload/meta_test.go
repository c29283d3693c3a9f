package upload

import (
	"encoding/binary"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

func TestMetaSOPInstanceUID(t *testing.T) {
	file := uploadtest.Part10(uploadtest.UID(1), uploadtest.UID(1, 2), uploadtest.UID(1, 2, 3), 10)
	meta := file[132:]
	// A File Meta Information whose (0002,0003) is not a UID.
	bad := binary.LittleEndian.AppendUint16(nil, 2)
	bad = binary.LittleEndian.AppendUint16(bad, 3)
	bad = append(bad, "UI"...)
	bad = binary.LittleEndian.AppendUint16(bad, 4)
	bad = append(bad, "1.x\x00"...)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"part 10", meta, uploadtest.UID(1, 2, 3)},
		{"cut in the UID", meta[:len(meta)-len(file)+200], ""},
		{"empty", nil, ""},
		{"not group 2", file[128+4+200:], ""},
		{"not a UID", bad, ""},
		{"garbage", []byte("\x02\x00\x00\x00OB\x00\x00\xff\xff\xff\xff"), ""},
	} {
		if got := metaSOPInstanceUID(tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzMetaSOPInstanceUID: any bytes give "" or a valid UID, without a panic.
func FuzzMetaSOPInstanceUID(f *testing.F) {
	f.Add(uploadtest.Part10(uploadtest.UID(1), uploadtest.UID(1, 2), uploadtest.UID(1, 2, 3), 10)[132:])
	f.Add([]byte("\x02\x00\x03\x00UI\xff\xff1.2"))
	f.Add([]byte("\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if uid := metaSOPInstanceUID(b); uid != "" && !validUID(uid) {
			t.Fatalf("%q is not a UID", uid)
		}
	})
}
