//go:build linux

package durable

import (
	"os"

	"golang.org/x/sys/unix"
)

// DataSync flushes f's data and whatever metadata is needed to read it back (fdatasync(2)):
// an overwrite of blocks already allocated costs no journal commit.
func DataSync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// SyncFS makes everything written to the file system holding dir durable, renames included
// (syncfs(2)). It reports false where the platform has no such call; then each file must be
// synced on its own.
func SyncFS(dir string) (bool, error) {
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()
	return true, unix.Syncfs(int(d.Fd()))
}
