package upload

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sanping/internal/durable"
	"strings"
	"time"
)

// candidate is a Part 10 file found by the walk.
type candidate struct {
	path string
	size int64
}

// walk finds the Part 10 files ("DICM" at offset 128, PS3.10 7.1) under paths, in lexical
// order. DICOMDIR files are skipped: the files they reference are found by the walk anyway.
// skipped counts the other files.
func walk(paths []string) (found []candidate, skipped int, err error) {
	seen := map[string]bool{}
	for _, root := range paths {
		root, err := filepath.Abs(root)
		if err != nil {
			return nil, 0, err
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() || seen[path] {
				return nil
			}
			seen[path] = true
			if strings.EqualFold(d.Name(), "DICOMDIR") {
				skipped++
				return nil
			}
			ok, size, err := isPart10(path)
			if err != nil {
				return err
			}
			if !ok {
				skipped++
				return nil
			}
			found = append(found, candidate{path, size})
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return found, skipped, nil
}

func isPart10(path string) (bool, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	var head [132]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false, 0, nil // shorter than a preamble
	}
	fi, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	return string(head[128:]) == "DICM", fi.Size(), nil
}

// tarSize is what a file of size n takes in a tar: a header block and its data in 512-byte blocks.
func tarSize(n int64) int64 { return 512 + (n+511)/512*512 }

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

// spool writes the bundle's tar to dir, streaming each file into it, and fsyncs it. Files that
// cannot be read are left out and returned as failed.
func spool(dir string, b *bundle) (path string, size int64, failed []FileOutcome, err error) {
	f, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return "", 0, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	tw := tar.NewWriter(f)
	members := 0
	for i, p := range b.Files {
		ok, ferr := addFile(tw, memberName(i, p), p)
		if ferr != nil {
			return "", 0, nil, ferr
		}
		if ok != "" {
			failed = append(failed, FileOutcome{Path: p, Outcome: OutcomeFailed, Error: ok})
			continue
		}
		members++
	}
	if err = tw.Close(); err != nil {
		return "", 0, nil, err
	}
	if members == 0 {
		f.Close()
		os.Remove(f.Name())
		return "", 0, failed, nil
	}
	if err = f.Sync(); err != nil {
		return "", 0, nil, err
	}
	if size, err = f.Seek(0, io.SeekCurrent); err != nil {
		return "", 0, nil, err
	}
	if err = f.Close(); err != nil {
		return "", 0, nil, err
	}
	path = filepath.Join(dir, "bundle-"+b.ID+".tar")
	if err = os.Rename(f.Name(), path); err != nil {
		return "", 0, nil, err
	}
	return path, size, failed, durable.SyncDir(dir)
}

// addFile streams one file into the tar. A file that cannot be opened gives a reason and no
// error; a failure once its header is written spoils the tar and is an error.
func addFile(tw *tar.Writer, name, path string) (reason string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "reading: " + err.Error(), nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "reading: " + err.Error(), nil
	}
	h := &tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime().Truncate(time.Second), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return "", err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return "", fmt.Errorf("%s changed while being bundled: %w", path, err)
	}
	return "", nil
}
