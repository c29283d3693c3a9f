package room

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sanping/sanping/protocol"
)

var opKinds = []string{protocol.OpImage, protocol.OpWindow, protocol.OpTransform, protocol.OpCine, protocol.OpPointer,
	protocol.OpAnnotationAdd, protocol.OpAnnotationUpdate, protocol.OpAnnotationDelete, protocol.OpReset}

// applyOp checks who may apply a validated op, completes it (author, times) and applies and
// broadcasts it, or refuses it with nothing changed.
func (r *Room) applyOp(mb *Member, op protocol.Op) error {
	p := mb.p
	now := r.stamp()
	detail := ""
	switch op.Kind {
	case protocol.OpImage, protocol.OpWindow, protocol.OpTransform, protocol.OpCine, protocol.OpReset:
		if r.driver != p {
			return refuse(protocol.ErrNotDriver, "only the driver changes the view")
		}
	case protocol.OpPointer:
		pt := *op.Pointer
		pt.By = p.id
		op.Pointer = &pt
		apply(&r.state, &op)
		r.queuePointer(p.id, op)
		return nil
	case protocol.OpAnnotationAdd:
		a := *op.Annotation
		if _, ok := r.state.Annotation[a.ID]; ok {
			return refuse(protocol.ErrConflict, "annotation %q exists", a.ID)
		}
		if len(r.state.Annotation) >= protocol.MaxAnnotations {
			return refuse(protocol.ErrInvalid, "at most %d annotations", protocol.MaxAnnotations)
		}
		a.Author, a.Created, a.Updated = p.id, now, now
		op.Annotation = &a
		detail = "add " + a.ID + " " + a.Kind
	case protocol.OpAnnotationUpdate, protocol.OpAnnotationDelete:
		id := op.AnnotationID
		if op.Kind == protocol.OpAnnotationUpdate {
			id = op.Annotation.ID
		}
		old, ok := r.state.Annotation[id]
		if !ok {
			return refuse(protocol.ErrNotFound, "no annotation %q", id)
		}
		if old.Author != p.id && r.driver != p {
			return refuse(protocol.ErrForbidden, "only its author or the driver changes annotation %q", id)
		}
		detail = "delete " + id + " " + old.Kind
		if op.Kind == protocol.OpAnnotationUpdate {
			a := *op.Annotation
			a.Author, a.Created, a.Updated = old.Author, old.Created, now
			op.Annotation = &a
			detail = "update " + id + " " + a.Kind
		}
	}
	// Another series cannot go on playing: the stop goes out as an op of its own, so a client
	// replaying ops on a snapshot needs no rule of its own.
	stopCine := op.Kind == protocol.OpImage && r.state.Cine.Playing &&
		(op.Image.Study != r.state.Image.Study || op.Image.Series != r.state.Image.Series)
	if !r.broadcastOp(p.id, op, now) {
		return refuse(protocol.ErrInvalid, "the op cannot be encoded")
	}
	apply(&r.state, &op)
	switch {
	case op.Kind == protocol.OpImage:
		im := op.Image
		r.event(p, "live.view", fmt.Sprintf("%s/%s/%s frame %d", im.Study, im.Series, im.Instance, im.Frame))
	case detail != "":
		r.event(p, "live.annotation", detail)
	}
	if stopCine {
		stop := protocol.Op{Kind: protocol.OpCine, Cine: &protocol.Cine{FPS: r.state.Cine.FPS}}
		if r.broadcastOp(p.id, stop, now) {
			apply(&r.state, &stop)
		}
	}
	return nil
}

// apply changes s by an op as the room accepted it. A client replaying OpApplied messages on
// a Snapshot does the same.
func apply(s *protocol.ViewState, op *protocol.Op) {
	switch op.Kind {
	case protocol.OpImage:
		s.Image = *op.Image
	case protocol.OpWindow:
		s.Window = *op.Window
	case protocol.OpTransform:
		s.Transform = *op.Transform
	case protocol.OpCine:
		s.Cine = *op.Cine
	case protocol.OpPointer:
		pt := *op.Pointer
		s.Pointer = &pt
	case protocol.OpAnnotationAdd, protocol.OpAnnotationUpdate:
		if s.Annotation == nil {
			s.Annotation = map[string]protocol.Annotation{}
		}
		s.Annotation[op.Annotation.ID] = *op.Annotation
	case protocol.OpAnnotationDelete:
		delete(s.Annotation, op.AnnotationID)
	case protocol.OpReset:
		d := protocol.DefaultViewState()
		s.Window, s.Transform, s.Cine = d.Window, d.Transform, d.Cine
	}
}

// broadcastOp gives op the next Seq and queues it to every connected member.
func (r *Room) broadcastOp(by string, op protocol.Op, t time.Time) bool {
	r.seq++
	if !r.broadcast(protocol.TypeOpApplied, protocol.OpApplied{Seq: r.seq, By: by, Op: op, Time: t}, nil) {
		r.seq--
		return false
	}
	return true
}

// pointerQueue paces pointer broadcasts to one per PointerInterval per room, latest wins. A
// pointer after a quiet interval goes out at once; the Seq is given when it goes out, so the
// ones dropped leave no gap.
type pointerQueue struct {
	pending *protocol.Op
	by      string
	last    time.Time // of the last pointer broadcast
	timer   *time.Timer
}

func (r *Room) queuePointer(by string, op protocol.Op) {
	q := &r.pointer
	q.pending, q.by = &op, by
	if q.timer != nil {
		return
	}
	wait := r.cfg.PointerInterval - r.now().Sub(q.last)
	if wait <= 0 {
		r.flushPointer()
		return
	}
	q.timer = time.AfterFunc(min(wait, r.cfg.PointerInterval), r.pointerTick)
}

func (r *Room) pointerTick() {
	r.mu.Lock()
	defer r.unlock()
	r.pointer.timer = nil
	if !r.closed {
		r.flushPointer()
	}
}

// flushPointer broadcasts the pointer waiting, if any.
func (r *Room) flushPointer() {
	q := &r.pointer
	if q.pending == nil {
		return
	}
	op := *q.pending
	q.pending = nil
	q.last = r.now()
	r.broadcastOp(q.by, op, r.stamp())
}

// snapshot copies the state, so that nothing the caller holds changes with the room.
func (r *Room) snapshot() protocol.Snapshot {
	s := r.state
	if s.Pointer != nil {
		pt := *s.Pointer
		s.Pointer = &pt
	}
	s.Annotation = maps.Clone(s.Annotation)
	for id, a := range s.Annotation {
		a.Points = slices.Clone(a.Points)
		s.Annotation[id] = a
	}
	return protocol.Snapshot{Seq: r.seq, State: s}
}
