//go:build !(linux || darwin || freebsd || windows)

package scp

import "errors"

// diskSpace is not known here: no threshold warning, and no check before a spool segment is
// prepared (a full disk still fails the preparation itself).
func diskSpace(dir string) (free, total int64, err error) { return 0, 0, errors.ErrUnsupported }

func noSpace(err error) bool { return false }
