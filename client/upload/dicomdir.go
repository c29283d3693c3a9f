package upload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// maxDICOMDIR bounds the DICOMDIR read into memory: one of a full DVD is a few MB.
const maxDICOMDIR = 64 << 20

// isDICOMDIR: the name PS3.10 8.6 gives a media's directory file.
func isDICOMDIR(path string) bool { return strings.EqualFold(filepath.Base(path), "DICOMDIR") }

// dicomdirFiles reads the DICOMDIR at path and gives the paths of the files it references,
// each resolved under the DICOMDIR's folder (see resolveFileID), or the reason it cannot be.
func dicomdirFiles(path string) (found []string, missing []FileOutcome, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDICOMDIR+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading DICOMDIR %s: %w", path, err)
	}
	if len(data) > maxDICOMDIR {
		return nil, nil, fmt.Errorf("DICOMDIR %s is larger than %d MB", path, maxDICOMDIR>>20)
	}
	ids, err := parseDICOMDIR(data)
	if err != nil {
		return nil, nil, fmt.Errorf("DICOMDIR %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, id := range ids {
		p, err := resolveFileID(dir, id)
		if err != nil {
			missing = append(missing, FileOutcome{Path: p, Outcome: OutcomeFailed, Reason: ReasonMissing,
				Error: fmt.Sprintf("referenced by %s as %s: %v", path, strings.Join(id, `\`), err)})
			continue
		}
		found = append(found, p)
	}
	return found, missing, nil
}

// errNotDICOMDIR: the file is not a Part 10 file with a Directory Record Sequence.
var errNotDICOMDIR = errors.New("not a DICOMDIR")

// parseDICOMDIR gives the Referenced File ID (0004,1500) of each record of the Directory
// Record Sequence (0004,1220), in the order of the records (PS3.3 F.3.2.2): the path of a
// file relative to the DICOMDIR's folder, one component a value.
func parseDICOMDIR(data []byte) (ids [][]string, err error) {
	// The library panics on some malformed input (see server/dcm's parseValues).
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("%w: the parser gave up: %v", errNotDICOMDIR, r)
		}
	}()
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return nil, fmt.Errorf("%w: no \"DICM\" at offset 128", errNotDICOMDIR)
	}
	// PS3.10 8.6: a DICOMDIR is explicit VR little endian, which checkLengths reads.
	if ts := metaUID(data[132:], tag.TransferSyntaxUID); ts != explicitVRLittleEndian {
		return nil, fmt.Errorf("%w: transfer syntax %q, not explicit VR little endian", errNotDICOMDIR, ts)
	}
	if err := checkLengths(data[132:]); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotDICOMDIR, err)
	}
	ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, dicom.SkipPixelData(),
		dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotDICOMDIR, err)
	}
	seq, err := ds.FindElementByTag(tag.DirectoryRecordSequence)
	if err != nil {
		return nil, fmt.Errorf("%w: no Directory Record Sequence (0004,1220)", errNotDICOMDIR)
	}
	items, ok := seq.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok {
		return nil, fmt.Errorf("%w: the Directory Record Sequence (0004,1220) is not a sequence", errNotDICOMDIR)
	}
	for _, item := range items {
		elems, _ := item.GetValue().([]*dicom.Element)
		for _, e := range elems {
			if e == nil || e.Tag != tag.ReferencedFileID || e.Value == nil {
				continue
			}
			vals, _ := e.Value.GetValue().([]string)
			var id []string
			for _, v := range vals {
				if v = strings.TrimRight(v, " \x00"); v != "" {
					id = append(id, v)
				}
			}
			if len(id) > 0 {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// resolveFileID finds the file of a Referenced File ID under dir. Media written on one system
// and mounted on another do not always keep the case of names (a CD's ISO 9660 names may
// read in lower case on Linux, some with a ";1" version), so a component not found as it is
// is matched without case and without that suffix. path is the best guess even on error.
func resolveFileID(dir string, id []string) (path string, err error) {
	path = dir
	for _, c := range id {
		if c == "." || c == ".." || strings.ContainsAny(c, `/\:`) {
			return filepath.Join(dir, filepath.Join(id...)), fmt.Errorf("invalid file ID component %q", c)
		}
	}
	for i, c := range id {
		next := filepath.Join(path, c)
		if _, err := os.Lstat(next); err == nil {
			path = next
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return next, err
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return filepath.Join(append([]string{path}, id[i:]...)...), fmt.Errorf("missing: %w", err)
		}
		match := ""
		for _, e := range entries {
			if strings.EqualFold(isoName(e.Name()), c) {
				match = e.Name()
				break
			}
		}
		if match == "" {
			return filepath.Join(append([]string{path}, id[i:]...)...), errors.New("missing: no such file")
		}
		path = filepath.Join(path, match)
	}
	return path, nil
}

// isoName is a name without an ISO 9660 version (";1") and the trailing dot of a name
// without extension ("IM000001.").
func isoName(name string) string {
	if i := strings.LastIndexByte(name, ';'); i >= 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(name, ".")
}

const explicitVRLittleEndian = "1.2.840.10008.1.2.1"

// undefinedLength is the value length of a sequence or item ended by a delimiter (PS3.5 7.5).
const undefinedLength = 0xFFFFFFFF

// checkLengths walks an explicit VR little endian data set and refuses one whose value
// lengths do not fit in it or whose VRs are unknown. The library allocates a value's length
// before reading it: on a damaged file a length of a few GB would be asked for (found by
// fuzzing). The long-length VRs are the library's (it reads OV, SV and UV with 16-bit lengths).
func checkLengths(b []byte) error {
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return errors.New("cut short in an element's header")
		}
		group, element := binary.LittleEndian.Uint16(b[off:]), binary.LittleEndian.Uint16(b[off+2:])
		if group == tag.Item.Group { // Item, Item and Sequence Delimitation: no VR, a 32-bit length
			n := binary.LittleEndian.Uint32(b[off+4:])
			off += 8
			if element == tag.Item.Element && n != undefinedLength && uint64(n) > uint64(len(b)-off) {
				return fmt.Errorf("an item of %d bytes at offset %d is longer than the file", n, off)
			}
			continue // an item's elements follow
		}
		vr := string(b[off+4 : off+6])
		var n uint64
		switch vr {
		case "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
			if len(b)-off < 12 {
				return errors.New("cut short in an element's header")
			}
			n = uint64(binary.LittleEndian.Uint32(b[off+8:]))
			off += 12
		case "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OV", "PN", "SH", "SL",
			"SS", "ST", "SV", "TM", "UI", "UL", "US", "UV":
			n = uint64(binary.LittleEndian.Uint16(b[off+6:]))
			off += 8
			if n == 0xFFFF { // the library takes it as undefined
				return fmt.Errorf("a %s value of undefined length at offset %d", vr, off)
			}
		default:
			return fmt.Errorf("unknown VR %q at offset %d", vr, off)
		}
		pixelData := group == tag.PixelData.Group && element == tag.PixelData.Element
		if n == undefinedLength && (vr == "SQ" || pixelData && (vr == "OB" || vr == "OW")) {
			continue // items follow, up to a delimiter
		}
		if n > uint64(len(b)-off) {
			return fmt.Errorf("a value of %d bytes at offset %d is longer than the file", n, off)
		}
		if vr != "SQ" {
			off += int(n)
		} // a sequence's items follow
	}
	return nil
}
