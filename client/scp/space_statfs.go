//go:build linux || darwin || freebsd

package scp

import (
	"errors"

	"golang.org/x/sys/unix"
)

// diskSpace returns the bytes available to an unprivileged user (f_bavail, not f_bfree: the
// blocks reserved for root are not ours) and the size of the file system holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// noSpace reports whether err is ENOSPC, or EDQUOT (a quota is a full disk to this user).
func noSpace(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }
