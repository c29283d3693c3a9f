package scp

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sanping/sanping/client/upload"
)

const (
	// maxQueuedBytes bounds the instances held in memory to be written out; associations wait
	// beyond it.
	maxQueuedBytes = 256 << 20
	// Waits between tries of a write-out that failed: doubling from retryMin to retryMax, each
	// drawn with full jitter. A minute at most: a technician who frees space sees the images
	// arrive soon after.
	retryMin = time.Second
	retryMax = time.Minute
)

// writer writes instances from the spool out to Dir/incoming once their success response has
// gone, in the order of the responses, then tells OnStored. The modality so waits only for the
// spool's fdatasync, not for a second copy of the data.
//
// A write-out that fails (a full disk, an I/O error) is tried again, with backoff, until it
// works; the instance stays at the head of the queue, so that the order holds (a later copy of
// the same SOP Instance UID lands last) and nothing is written out twice. Meanwhile the queue
// lets go of its buffers: the instances are read back from the spool when their turn comes,
// and the modality goes on sending as long as the spool has room.
type writer struct {
	sp       *spool
	log      *slog.Logger
	onStored func(Stored)
	changed  func() // the state file has news
	retryMin time.Duration
	retryMax time.Duration
	bufs     sync.Pool // of *[]byte, for instances received into memory

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*instanceFile
	queued  int   // bytes held in memory by the queue
	busy    bool  // an instance is being written out
	failing error // the last write-out's error, while trying again; nil once one works
	tries   int   // failed tries of the instance at the head of the queue
	closed  bool
	stop    chan struct{} // closed with the writer: no more waiting between tries
	done    chan struct{}
}

// newWriter starts writing out the spool's backlog, then what put queues.
func newWriter(sp *spool, backlog []record, log *slog.Logger, onStored func(Stored), changed func(), minWait, maxWait time.Duration) *writer {
	w := &writer{sp: sp, log: log, onStored: onStored, changed: changed, retryMin: minWait, retryMax: maxWait,
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, r := range backlog {
		w.queue = append(w.queue, &instanceFile{rec: r, replayed: true, stored: Stored{SOPInstance: r.name, Size: int64(r.size)}})
	}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// buffer returns an empty buffer for an instance received into memory.
func (w *writer) buffer() []byte {
	if b, ok := w.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 64<<10)
}

// release gives back the buffer of an instance that is not queued.
func (w *writer) release(b []byte) {
	if cap(b) > 0 {
		w.bufs.Put(&b)
	}
}

// put queues an instance committed to the spool, waiting while too much is held in memory.
func (w *writer) put(in *instanceFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing != nil {
		w.release(in.buf) // read back from the spool when its turn comes
		in.buf = nil
	}
	for w.queued > maxQueuedBytes && !w.closed {
		w.cond.Wait()
	}
	w.queue = append(w.queue, in)
	w.queued += len(in.buf)
	w.cond.Broadcast()
}

// flush waits until nothing queued can land on Dir/incoming/<uid>.dcm any more: until the queue
// is written out, or, while write-outs fail, reports whether none queued is of uid.
func (w *writer) flush(uid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for (len(w.queue) > 0 || w.busy) && w.failing == nil && !w.closed {
		w.cond.Wait()
	}
	return !slices.ContainsFunc(w.queue, func(in *instanceFile) bool { return in.rec.name == uid })
}

// failure returns the error of write-outs being tried again, nil if they work.
func (w *writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

// close writes out what is queued, unless write-outs fail, and stops. What is not written out
// stays in the spool for the next start.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
		w.cond.Broadcast()
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.queue) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.queue) == 0 {
			return
		}
		in := w.queue[0] // stays at the head until written out
		w.busy = true
		w.mu.Unlock()
		st, err := w.writeOut(in)
		if errors.Is(err, errBadRecord) {
			w.log.Error("scp: cannot read an instance back from the spool; kept for the next start", "sop_instance", in.rec.name, "err", err)
			w.sp.giveUp(in.rec)
		}
		w.mu.Lock()
		if err != nil && !errors.Is(err, errBadRecord) {
			w.busy = false
			if !w.wait(in, err) {
				return
			}
			continue
		}
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.queued -= len(in.buf)
		w.release(in.buf)
		in.buf = nil
		if w.failing != nil && err == nil {
			w.log.Info("scp: writing out to incoming works again", "tries", w.tries)
			w.failing, w.tries = nil, 0
			w.changed()
		}
		if err == nil && w.onStored != nil && !in.replayed {
			w.mu.Unlock()
			w.onStored(st)
			w.mu.Lock()
		}
		w.busy = false
		w.cond.Broadcast()
	}
}

// writeOut writes in out to Dir/incoming, reading it back from the spool if its buffer was let go.
func (w *writer) writeOut(in *instanceFile) (Stored, error) {
	data := in.buf
	if data == nil {
		b, err := w.sp.read(in.rec, w.buffer())
		defer w.release(b)
		if err != nil {
			return Stored{}, err
		}
		data = b[len(b)-in.rec.size:]
	}
	p, err := w.sp.writeOut(in.rec, data)
	if err != nil {
		return Stored{}, err
	}
	st := in.stored
	st.Path = p
	return st, nil
}

// wait waits before the next try of in, whose write-out failed with err, and lets go of the
// queue's buffers. It reports false once the writer is closed. Called with mu held.
func (w *writer) wait(in *instanceFile, err error) bool {
	if w.closed {
		w.log.Warn("scp: instances left in the spool, written out at the next start", "instances", len(w.queue), "err", err)
		return false
	}
	if w.failing == nil {
		w.log.Error("scp: cannot write out to incoming; trying again", "sop_instance", in.rec.name, "err", err)
		w.changed()
	} else {
		w.log.Debug("scp: writing out to incoming failed again", "sop_instance", in.rec.name, "tries", w.tries+1, "err", err)
	}
	w.failing = err
	w.tries++
	for _, q := range w.queue {
		w.queued -= len(q.buf)
		w.release(q.buf)
		q.buf = nil
	}
	w.cond.Broadcast() // put and flush
	d := w.retryMin << min(w.tries-1, 20)
	if d > w.retryMax || d <= 0 {
		d = w.retryMax
	}
	t := time.NewTimer(upload.FullJitter(d))
	defer t.Stop()
	w.mu.Unlock()
	select {
	case <-t.C:
	case <-w.stop:
	}
	w.mu.Lock()
	return !w.closed
}
