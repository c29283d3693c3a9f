package scp

import (
	"errors"
	"os"
)

// disk is what the SCP asks of the file system where a full disk shows: writes that allocate
// blocks (ENOSPC), renames (a directory may need a block too), and the free space. Config.disk
// nil means osDisk; tests fill a disk without filling the real one.
type disk interface {
	write(f *os.File, p []byte) (int, error)
	rename(oldpath, newpath string) error
	// space returns the bytes free to this user and the size of the file system holding dir.
	space(dir string) (free, total int64, err error)
}

type osDisk struct{}

func (osDisk) write(f *os.File, p []byte) (int, error)         { return f.Write(p) }
func (osDisk) rename(oldpath, newpath string) error            { return os.Rename(oldpath, newpath) }
func (osDisk) space(dir string) (free, total int64, err error) { return diskSpace(dir) }

// isDiskFull reports whether err says the disk has no room (Error Comment "disk full").
func isDiskFull(err error) bool { return errors.Is(err, errDiskFull) || noSpace(err) }
