// Package durable writes files so that what was acknowledged survives a crash: the fsyncs
// every store of Sanping (index, uploads, journals, consent forms, the DICOM spool) relies on.
package durable

import (
	"os"
	"path/filepath"
	"runtime"
)

// SyncDir makes a create, rename or removal in dir durable. Windows cannot fsync a directory
// (opening one for Sync is refused) and NTFS journals renames itself: there it does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFile writes a file whole or not at all: a temporary file beside it, fsync, rename over
// path, fsync of the directory.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
