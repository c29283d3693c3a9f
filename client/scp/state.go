package scp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sanping/sanping/internal/durable"
	"github.com/sanping/sanping/protocol"
)

const (
	// StateName is the file in Dir where a running SCP keeps its State.
	StateName = "scp-state.json"
	// stateInterval: how often free space is looked at, and the state file written if it
	// changed; a warning or a failure in between writes it at once.
	stateInterval = 10 * time.Second
	// The warning threshold when Config.MinFree is 0: 1 GiB, or 5% of a small disk.
	defaultMinFree      = 1 << 30
	defaultMinFreeShare = 20 // 1/20: 5%
)

// State is what the SCP last recorded in Dir/StateName, for `sanping-station status`.
type State struct {
	Updated time.Time `json:"updated"`
	Running bool      `json:"running"` // false once the SCP stopped
	// Free is the bytes free on Dir's disk (-1: not known); below MinFree, LowSpace.
	Free     int64 `json:"free"`
	MinFree  int64 `json:"minFree"`
	LowSpace bool  `json:"lowSpace,omitempty"`
	// Waiting counts instances acknowledged to the modality and not yet in Dir/incoming.
	Waiting      int   `json:"waiting"`
	WaitingBytes int64 `json:"waitingBytes"`
	// WriteOutError is set while writing out to Dir/incoming fails and is tried again.
	WriteOutError string `json:"writeOutError,omitempty"`
	// Refusing says why C-STORE is refused (out of resources) for want of room in the spool.
	Refusing string `json:"refusing,omitempty"`
}

// ReadState reads the State an SCP recorded in dir; an error satisfying
// errors.Is(err, fs.ErrNotExist) if none did.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, StateName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("reading %s: %w", StateName, err)
	}
	return st, nil
}

// minFree is the warning threshold for a disk of total bytes (0: not known).
func minFree(configured, total int64) int64 {
	if configured > 0 {
		return configured
	}
	if total > 0 {
		return min(defaultMinFree, total/defaultMinFreeShare)
	}
	return defaultMinFree
}

// watchState records the state every stateInterval and when told of news, until stop closes.
func (s *Server) watchState(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(stateInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-s.news:
		}
		s.recordState(true)
	}
}

// recordState looks at the free space, warns on crossing the threshold, and writes the state
// file if anything changed (or the SCP stops).
func (s *Server) recordState(running bool) {
	free, total, err := s.cfg.disk.space(s.cfg.Dir)
	if err != nil {
		free, total = -1, 0
	}
	st := State{Running: running, Free: free, MinFree: minFree(s.cfg.MinFree, total)}
	st.LowSpace = free >= 0 && free < st.MinFree
	var noRoom error
	st.Waiting, st.WaitingBytes, noRoom = s.spool.usage()
	if noRoom != nil {
		st.Refusing = noRoom.Error()
	}
	if err := s.writer.failure(); err != nil {
		st.WriteOutError = err.Error()
	}

	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	switch {
	case st.LowSpace && !s.lowSpace:
		s.log.Warn("scp: free disk space below the threshold (-min-free)", "dir", s.cfg.Dir, "free", free, "min_free", st.MinFree)
	case !st.LowSpace && s.lowSpace:
		s.log.Info("scp: free disk space above the threshold again", "dir", s.cfg.Dir, "free", free, "min_free", st.MinFree)
	}
	s.lowSpace = st.LowSpace
	key := st
	key.Free >>= 20 // a change under 1 MiB is no news
	if s.stateWritten && key == s.stateKey {
		return
	}
	st.Updated = time.Now().UTC()
	b, _ := json.Marshal(st)
	if err := durable.WriteFile(filepath.Join(s.cfg.Dir, StateName), b); err != nil {
		s.log.Debug("scp: writing the state file", "err", err) // a full disk: tried again later
		return
	}
	s.stateKey, s.stateWritten = key, true
}

// tell wakes watchState to record news (a failure, a refusal, or their end); it never blocks.
func (s *Server) tell() {
	select {
	case s.news <- struct{}{}:
	default:
	}
}

// Report is the spool as the station reports it to the server.
func (st State) Report() *protocol.StationSpool {
	return &protocol.StationSpool{WaitingImages: st.Waiting, WaitingBytes: st.WaitingBytes, DiskFree: st.Free, Refusing: st.Refusing != ""}
}
