package live

import (
	"maps"
	"slices"

	"github.com/sanping/sanping/protocol"
)

// ApplyOp applies an op in the room's order to a view, as the server does: each kind
// replaces its part of the view; annotations are added, updated (keeping their author and
// creation time) and deleted by ID; reset puts window, transform and cine back to their
// defaults. The server has checked the op, so ApplyOp only guards against missing fields.
func ApplyOp(state *protocol.ViewState, a protocol.OpApplied) {
	op := a.Op
	switch op.Kind {
	case protocol.OpImage:
		if op.Image != nil {
			state.Image = *op.Image
		}
	case protocol.OpWindow:
		if op.Window != nil {
			state.Window = *op.Window
		}
	case protocol.OpTransform:
		if op.Transform != nil {
			state.Transform = *op.Transform
		}
	case protocol.OpCine:
		if op.Cine != nil {
			state.Cine = *op.Cine
		}
	case protocol.OpPointer:
		if op.Pointer != nil {
			ptr := *op.Pointer
			ptr.By = a.By
			state.Pointer = &ptr
		}
	case protocol.OpAnnotationAdd:
		if op.Annotation == nil {
			return
		}
		an := cloneAnnotation(*op.Annotation)
		an.Author, an.Created, an.Updated = a.By, a.Time, a.Time
		if state.Annotation == nil {
			state.Annotation = map[string]protocol.Annotation{}
		}
		state.Annotation[an.ID] = an
	case protocol.OpAnnotationUpdate:
		if op.Annotation == nil {
			return
		}
		old, ok := state.Annotation[op.Annotation.ID]
		if !ok {
			return
		}
		an := cloneAnnotation(*op.Annotation)
		an.Author, an.Created, an.Updated = old.Author, old.Created, a.Time
		state.Annotation[an.ID] = an
	case protocol.OpAnnotationDelete:
		delete(state.Annotation, op.AnnotationID)
	case protocol.OpReset:
		def := protocol.DefaultViewState()
		state.Window, state.Transform, state.Cine = def.Window, def.Transform, def.Cine
	}
}

func cloneAnnotation(a protocol.Annotation) protocol.Annotation {
	a.Points = slices.Clone(a.Points)
	return a
}

// cloneState copies a view so that the copy shares nothing with the original.
func cloneState(s protocol.ViewState) protocol.ViewState {
	if s.Pointer != nil {
		ptr := *s.Pointer
		s.Pointer = &ptr
	}
	m := maps.Clone(s.Annotation)
	if m == nil {
		m = map[string]protocol.Annotation{}
	}
	for id, a := range m {
		m[id] = cloneAnnotation(a)
	}
	s.Annotation = m
	return s
}
