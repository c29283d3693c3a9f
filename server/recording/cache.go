package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/singleflight"
)

// Cache keeps each remuxed WebM beside its video: <video>.<key>.webm, the key hashing both
// inputs' paths, sizes, modification times and starts. A recording is listed only once the SFU
// has finalized it, but its audio may be paired later (or a file rewritten): the key changes,
// the new WebM is written and the old one removed. Derived data: nothing is lost with it.
type Cache struct {
	flight singleflight.Group
}

// WebM returns the path of the WebM for video with audio (audio.Path may be empty), writing it
// first if needed. Requests for the same file at once share one remux.
func (c *Cache) WebM(video, audio Source) (string, error) {
	key, err := cacheKey(video, audio)
	if err != nil {
		return "", err
	}
	path := video.Path + "." + key + ".webm"
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	_, err, _ = c.flight.Do(path, func() (any, error) {
		if _, err := os.Stat(path); err == nil {
			return nil, nil
		}
		if err := writeFile(path, video, audio); err != nil {
			return nil, err
		}
		removeStale(video.Path, path)
		return nil, nil
	})
	return path, err
}

func cacheKey(srcs ...Source) (string, error) {
	h := sha256.New()
	for _, s := range srcs {
		if s.Path == "" {
			fmt.Fprintln(h, "-")
			continue
		}
		fi, err := os.Stat(s.Path)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, s.Path, fi.Size(), fi.ModTime().UnixNano(), s.Start.UnixNano(), s.End.UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// writeFile writes the WebM to a temporary name, syncs it and renames it into place, so a
// reader never sees a partial file.
func writeFile(path string, video, audio Source) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = WriteWebM(f, video, audio)
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
		os.Remove(f.Name())
		return fmt.Errorf("recording: writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// removeStale removes the video's other WebMs (from an earlier pairing).
func removeStale(video, keep string) {
	entries, err := os.ReadDir(filepath.Dir(video))
	if err != nil {
		return
	}
	prefix := filepath.Base(video) + "."
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".webm") && n != filepath.Base(keep) &&
			!strings.Contains(n[len(prefix):len(n)-len(".webm")], ".") {
			os.Remove(filepath.Join(filepath.Dir(video), n))
		}
	}
}
