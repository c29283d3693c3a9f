package scp

import (
	"log/slog"
	"sync"
)

// maxQueuedBytes bounds the instances waiting to be written out; associations wait beyond it.
const maxQueuedBytes = 256 << 20

// writer writes instances from the spool out to Dir/incoming once their success response has
// gone, in the order of the responses, then tells OnStored. The modality so waits only for the
// spool's fdatasync, not for a second copy of the data.
type writer struct {
	sp       *spool
	log      *slog.Logger
	onStored func(Stored)
	bufs     sync.Pool // of *[]byte, for instances received into memory

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*instanceFile
	queued int  // bytes in queue
	busy   bool // an instance is being written out
	closed bool
	done   chan struct{}
}

func newWriter(sp *spool, log *slog.Logger, onStored func(Stored)) *writer {
	w := &writer{sp: sp, log: log, onStored: onStored, done: make(chan struct{})}
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

// put queues an instance committed to the spool, waiting while too much is queued.
func (w *writer) put(in *instanceFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.queued > maxQueuedBytes && !w.closed {
		w.cond.Wait()
	}
	w.queue = append(w.queue, in)
	w.queued += len(in.buf)
	w.cond.Broadcast()
}

// flush waits until everything queued is written out.
func (w *writer) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 || w.busy {
		w.cond.Wait()
	}
}

// close writes out what is queued and stops.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
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
		in := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.busy = true
		w.mu.Unlock()

		st, err := in.writeOut(w.sp)
		if err != nil {
			// Durable in the spool, which writes it out again at the next start.
			w.log.Error("scp: writing out from the spool; again at the next start", "sop_instance", in.stored.SOPInstance, "err", err)
		} else if w.onStored != nil {
			w.onStored(st)
		}
		n := len(in.buf)
		w.release(in.buf)
		in.buf = nil

		w.mu.Lock()
		w.busy = false
		w.queued -= n
		w.cond.Broadcast()
	}
}
