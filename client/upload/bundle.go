package upload

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// candidate is a Part 10 file found by the walk.
type candidate struct {
	path string
	size int64
	uid  string // Media Storage SOP Instance UID, if the File Meta Information has a valid one
}

// walk finds the Part 10 files ("DICM" at offset 128, PS3.10 7.1) under paths, in lexical
// order, and names every other file with the reason it is not sent:
//   - a file named on the command line that is not Part 10 fails (the job then ends non-zero);
//   - in a folder, other files are skipped (a CD holds readme files and viewers);
//   - with dicomdir, a path that is a DICOMDIR gives the files it references, and a DICOMDIR
//     met in a folder is skipped (the walk finds its files) but what it references and is
//     gone, or is not Part 10, fails: the CD is missing images.
func walk(paths []string, dicomdir bool) (found []candidate, failed, skipped []FileOutcome, err error) {
	seen := map[string]bool{}
	referenced := func(dirPath string) error {
		files, missing, err := dicomdirFiles(dirPath)
		if err != nil {
			return err
		}
		failed = append(failed, missing...)
		for _, p := range files {
			if seen[p] {
				continue
			}
			seen[p] = true
			ok, size, uid, err := readHead(p)
			if err != nil || !ok {
				o := notPart10(p, err)
				o.Outcome, o.Error = OutcomeFailed, "referenced by "+dirPath+": "+o.Error
				failed = append(failed, o)
				continue
			}
			found = append(found, candidate{p, size, uid})
		}
		return nil
	}
	for _, root := range paths {
		root, err := filepath.Abs(root)
		if err != nil {
			return nil, nil, nil, err
		}
		fi, err := os.Stat(root)
		if err != nil {
			return nil, nil, nil, err
		}
		if fi.Mode().IsRegular() && dicomdir && isDICOMDIR(root) {
			if err := referenced(root); err != nil {
				return nil, nil, nil, err
			}
			continue
		}
		if fi.Mode().IsRegular() && isDICOMDIR(root) {
			skipped = append(skipped, FileOutcome{Path: root, Outcome: OutcomeSkipped, Reason: ReasonDICOMDIR, Error: "a DICOMDIR: not followed here"})
			continue
		}
		if fi.Mode().IsRegular() {
			// Named on the command line: sent, or failed with the reason.
			if seen[root] {
				continue
			}
			seen[root] = true
			ok, size, uid, err := readHead(root)
			if err != nil || !ok {
				o := notPart10(root, err)
				o.Outcome = OutcomeFailed
				failed = append(failed, o)
				continue
			}
			found = append(found, candidate{root, size, uid})
			continue
		}
		var dicomdirs []string
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() || seen[path] {
				return nil
			}
			seen[path] = true
			if isDICOMDIR(path) {
				skipped = append(skipped, FileOutcome{Path: path, Outcome: OutcomeSkipped, Reason: ReasonDICOMDIR, Error: "a DICOMDIR: the files it lists are sent as found in the folder"})
				dicomdirs = append(dicomdirs, path)
				return nil
			}
			ok, size, uid, err := readHead(path)
			if err != nil {
				return err
			}
			if !ok {
				o := notPart10(path, nil)
				o.Outcome = OutcomeSkipped
				skipped = append(skipped, o)
				return nil
			}
			found = append(found, candidate{path, size, uid})
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
		if dicomdir {
			// What a DICOMDIR in the folder lists and the folder lacks is a missing image.
			for _, dd := range dicomdirs {
				if err := referenced(dd); err != nil {
					failed = append(failed, FileOutcome{Path: dd, Outcome: OutcomeFailed, Reason: ReasonBadDICOMDIR, Error: err.Error()})
				}
			}
		}
	}
	return found, failed, skipped, nil
}

// notPart10 says what a file that is not DICOM Part 10 seems to be, for the technician: the
// outcome's Path, Reason and Error (the caller sets Outcome).
func notPart10(path string, err error) FileOutcome {
	o := func(reason, text string) FileOutcome { return FileOutcome{Path: path, Reason: reason, Error: text} }
	if err != nil {
		return o(ReasonUnreadable, "cannot be read: "+err.Error())
	}
	f, err := os.Open(path)
	if err != nil {
		return o(ReasonUnreadable, "cannot be read: "+err.Error())
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case n == 0:
		return o(ReasonEmpty, "an empty file")
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return o(ReasonJPEG, "a JPEG picture, not DICOM: send the modality's DICOM files")
	case bytes.HasPrefix(head, []byte("\x89PNG")):
		return o(ReasonPNG, "a PNG picture, not DICOM: send the modality's DICOM files")
	case bytes.HasPrefix(head, []byte("%PDF")):
		return o(ReasonPDF, "a PDF document, not DICOM")
	case utf8.Valid(head) && !bytes.ContainsRune(head, 0):
		return o(ReasonText, "a text file, not DICOM")
	}
	return o(ReasonNotDICOM, "not a DICOM Part 10 file (no \"DICM\" at offset 128)")
}

// tarSize is what a file of size n takes in a tar: a PAX header (a block and a block of records,
// the checksum's among them), a header block and its data in 512-byte blocks.
func tarSize(n int64) int64 { return 3*512 + (n+511)/512*512 }

// group cuts the files into bundles of at most limit bytes of tar (a larger file goes alone).
func group(files []candidate, limit int64) []*bundle {
	var out []*bundle
	var cur *bundle
	var size int64
	for _, f := range files {
		n := tarSize(f.size)
		if cur == nil || (size+n > limit && len(cur.Files) > 0) {
			cur = &bundle{ID: newID(), bundleState: bundleState{State: statePending}}
			out = append(out, cur)
			size = 1024 // the two zero blocks that end the archive
		}
		cur.Files = append(cur.Files, f.path)
		size += n
	}
	return out
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// estimate is the bundle's tar size from its files' sizes (before it is written).
func estimate(b *bundle) int64 {
	n := int64(1024)
	for _, p := range b.Files {
		if fi, err := os.Stat(p); err == nil {
			n += tarSize(fi.Size())
		}
	}
	return n
}

// memberName names file i of a bundle in the tar; the server's result names it back.
func memberName(i int, path string) string {
	base := filepath.Base(path)
	if len(base) > 80 {
		base = base[len(base)-80:]
	}
	return fmt.Sprintf("%05d-%s", i, base)
}
