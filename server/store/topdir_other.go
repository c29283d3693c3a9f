//go:build !linux

package store

// spreadSubdirectories is a Linux/ext4 optimisation (see topdir_linux.go).
func spreadSubdirectories(string) {}
