package upload

import (
	"encoding/binary"
	"io"
	"os"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// headSize is what is read of each file to tell a Part 10 file and find its SOP Instance UID:
// the File Meta Information is a few hundred bytes, and (0002,0003) comes early in it.
const headSize = 1024

// readHead tells whether path is a Part 10 file ("DICM" at offset 128, PS3.10 7.1), its size
// and the Media Storage SOP Instance UID of its File Meta Information ("" if not found).
func readHead(path string) (ok bool, size int64, uid string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, 0, "", err
	}
	defer f.Close()
	head := make([]byte, headSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return false, 0, "", err
	}
	head = head[:n]
	if len(head) < 132 || string(head[128:132]) != "DICM" {
		return false, 0, "", nil
	}
	fi, err := f.Stat()
	if err != nil {
		return false, 0, "", err
	}
	return true, fi.Size(), metaSOPInstanceUID(head[132:]), nil
}

// isPart10 is readHead without the UID.
func isPart10(path string) (bool, int64, error) {
	ok, size, _, err := readHead(path)
	return ok, size, err
}

// metaSOPInstanceUID finds Media Storage SOP Instance UID (0002,0003) in the start of a File
// Meta Information (the bytes after "DICM"), which is always explicit VR little endian
// (PS3.10 7.1). It gives "" when the element is not there, cut off, or not a valid UID.
func metaSOPInstanceUID(b []byte) string {
	uid := metaUID(b, tag.MediaStorageSOPInstanceUID)
	if !validUID(uid) {
		return ""
	}
	return uid
}

// metaUID is the value of the element t of group 0002 in the start of a File Meta
// Information, without its padding; "" if it is not there or cut off.
func metaUID(b []byte, t tag.Tag) string {
	for len(b) >= 8 {
		group, element := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
		if group != t.Group {
			return "" // past the File Meta Information
		}
		var n uint64
		switch string(b[4:6]) {
		// PS3.5 7.1.2: these VRs have two reserved bytes and a 32-bit length.
		case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
			if len(b) < 12 {
				return ""
			}
			n, b = uint64(binary.LittleEndian.Uint32(b[8:])), b[12:]
		default:
			n, b = uint64(binary.LittleEndian.Uint16(b[6:])), b[8:]
		}
		if n > uint64(len(b)) {
			return ""
		}
		if element == t.Element {
			return strings.TrimRight(string(b[:n]), "\x00 ")
		}
		if element > t.Element {
			return "" // elements are in ascending order
		}
		b = b[n:]
	}
	return ""
}

// validUID: digits and dots, at most 64 characters (PS3.5 9.1), so that it can go in a query's
// list of UIDs as it is.
func validUID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}
