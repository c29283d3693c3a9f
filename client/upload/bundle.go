package upload

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// candidate is a Part 10 file found by the walk.
type candidate struct {
	path string
	size int64
	uid  string // Media Storage SOP Instance UID, if the File Meta Information has a valid one
}

// walk finds the Part 10 files ("DICM" at offset 128, PS3.10 7.1) under paths, in lexical
// order. With dicomdir, a path that is a DICOMDIR gives the files it references; those missing
// or not Part 10 are failed, with the reason. A DICOMDIR met in a folder is skipped: the walk
// finds its files anyway. skipped counts the files that are neither sent nor failed.
func walk(paths []string, dicomdir bool) (found []candidate, failed []FileOutcome, skipped int, err error) {
	seen := map[string]bool{}
	for _, root := range paths {
		root, err := filepath.Abs(root)
		if err != nil {
			return nil, nil, 0, err
		}
		if fi, err := os.Stat(root); err == nil && fi.Mode().IsRegular() && dicomdir && isDICOMDIR(root) {
			files, missing, err := dicomdirFiles(root)
			if err != nil {
				return nil, nil, 0, err
			}
			failed = append(failed, missing...)
			for _, p := range files {
				if seen[p] {
					continue
				}
				seen[p] = true
				ok, size, uid, err := readHead(p)
				if err != nil || !ok {
					reason := "not a DICOM Part 10 file (no \"DICM\" at offset 128)"
					if err != nil {
						reason = "reading: " + err.Error()
					}
					failed = append(failed, FileOutcome{Path: p, Outcome: OutcomeFailed, Error: "referenced by " + root + ": " + reason})
					continue
				}
				found = append(found, candidate{p, size, uid})
			}
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() || seen[path] {
				return nil
			}
			seen[path] = true
			if isDICOMDIR(path) {
				skipped++
				return nil
			}
			ok, size, uid, err := readHead(path)
			if err != nil {
				return err
			}
			if !ok {
				skipped++
				return nil
			}
			found = append(found, candidate{path, size, uid})
			return nil
		})
		if err != nil {
			return nil, nil, 0, err
		}
	}
	return found, failed, skipped, nil
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
