//go:build !linux

package durable

import "os"

// DataSync flushes f's data; on this platform it is a full fsync.
func DataSync(f *os.File) error { return f.Sync() }

// SyncFS reports false: this platform has no syncfs(2); each file must be synced on its own.
func SyncFS(dir string) (bool, error) { return false, nil }
