package upload

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sanping/internal/durable"
	"sanping/protocol"
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
			cur = &bundle{ID: newID(), State: statePending}
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

// spooled is a bundle's tar written to the journal directory.
type spooled struct {
	path   string
	size   int64
	sha256 []string      // of each file as put in the tar, in hex; "" for those left out
	failed []FileOutcome // the files that could not be read, left out
}

// spool writes the bundle's tar to dir, streaming each file into it, and fsyncs it. Files that
// cannot be read are left out and returned as failed; path is "" if no file could be read.
func spool(dir string, b *bundle) (sp spooled, err error) {
	f, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return sp, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	tw := tar.NewWriter(f)
	sp.sha256 = make([]string, len(b.Files))
	members := 0
	for i, p := range b.Files {
		sum, reason, err := addFile(f, tw, memberName(i, p), p)
		if err != nil {
			return spooled{}, err
		}
		if reason != "" {
			sp.failed = append(sp.failed, FileOutcome{Path: p, Outcome: OutcomeFailed, Error: reason})
			continue
		}
		sp.sha256[i] = sum
		members++
	}
	if err = tw.Close(); err != nil {
		return spooled{}, err
	}
	if members == 0 {
		f.Close()
		os.Remove(f.Name())
		return spooled{failed: sp.failed}, nil
	}
	if err = f.Sync(); err != nil {
		return spooled{}, err
	}
	if sp.size, err = f.Seek(0, io.SeekCurrent); err != nil {
		return spooled{}, err
	}
	if err = f.Close(); err != nil {
		return spooled{}, err
	}
	sp.path = filepath.Join(dir, "bundle-"+b.ID+".tar")
	if err = os.Rename(f.Name(), sp.path); err != nil {
		return spooled{}, err
	}
	return sp, durable.SyncDir(dir)
}

// placeholderSHA256 holds the place of a member's checksum in its PAX header until the member
// is written: the record precedes the data, which is hashed as it streams into the tar.
var placeholderSHA256 = strings.Repeat("0", sha256.Size*2)

// addFile streams one file into the tar (written to f, at its end) with the SHA-256 of its
// content in a PAX record (protocol.TarSHA256), which the server checks. A file that cannot be
// opened gives a reason and no error; a failure once its header is written spoils the tar and
// is an error.
func addFile(f *os.File, tw *tar.Writer, name, path string) (sum, reason string, err error) {
	in, err := os.Open(path)
	if err != nil {
		return "", "reading: " + err.Error(), nil
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", "reading: " + err.Error(), nil
	}
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", "", err
	}
	h := &tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime().Truncate(time.Second), Typeflag: tar.TypeReg,
		PAXRecords: map[string]string{protocol.TarSHA256: placeholderSHA256}}
	if err := tw.WriteHeader(h); err != nil {
		return "", "", err
	}
	// tar.Writer does not buffer: the headers are in f already, the placeholder among them.
	end, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", "", err
	}
	head := make([]byte, end-start)
	if _, err := f.ReadAt(head, start); err != nil {
		return "", "", fmt.Errorf("reading back the tar header: %w", err)
	}
	at := bytes.Index(head, []byte(protocol.TarSHA256+"="+placeholderSHA256))
	if at < 0 {
		return "", "", errors.New("the tar header lacks the checksum record")
	}
	hash := sha256.New()
	if _, err := io.CopyN(tw, io.TeeReader(in, hash), fi.Size()); err != nil {
		return "", "", fmt.Errorf("%s changed while being bundled: %w", path, err)
	}
	sum = hex.EncodeToString(hash.Sum(nil))
	if _, err := f.WriteAt([]byte(sum), start+int64(at+len(protocol.TarSHA256)+1)); err != nil {
		return "", "", fmt.Errorf("writing the checksum record: %w", err)
	}
	return sum, "", nil
}
