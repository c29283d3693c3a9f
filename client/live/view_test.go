package live

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
)

func TestApplyOp(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	img := protocol.ImageRef{Study: "1.2.3", Series: "1.2.3.4", Instance: "1.2.3.4.5", Frame: 2}
	line := protocol.Annotation{ID: "a1", Kind: "line", Image: img, Points: []protocol.Point{{X: 0.1, Y: 0.2}, {X: 0.3, Y: 0.4}}}
	moved := protocol.Annotation{ID: "a1", Kind: "line", Image: img, Points: []protocol.Point{{X: 0.5, Y: 0.5}, {X: 0.6, Y: 0.6}}, Text: "moved"}
	added := line
	added.Author, added.Created, added.Updated = "p1", t0, t0
	updated := moved
	updated.Author, updated.Created, updated.Updated = "p1", t0, t1

	withLine := protocol.DefaultViewState()
	withLine.Annotation["a1"] = added
	changed := protocol.DefaultViewState()
	changed.Window = protocol.Window{Center: 40, Width: 400}
	changed.Transform = protocol.Transform{Zoom: 2, PanX: 0.1, Rotation: 90, Invert: true}
	changed.Cine = protocol.Cine{Playing: true, FPS: 25}
	changed.Image = img

	tests := []struct {
		name   string
		before protocol.ViewState
		ops    []protocol.OpApplied
		want   func(*protocol.ViewState)
	}{
		{"image", protocol.DefaultViewState(),
			[]protocol.OpApplied{{Op: protocol.Op{Kind: protocol.OpImage, Image: &img}}},
			func(s *protocol.ViewState) { s.Image = img }},
		{"window then transform then cine", protocol.DefaultViewState(),
			[]protocol.OpApplied{
				{Op: protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 40, Width: 400}}},
				{Op: protocol.Op{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 3}}},
				{Op: protocol.Op{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 2, PanX: 0.1, Rotation: 90, Invert: true}}},
				{Op: protocol.Op{Kind: protocol.OpCine, Cine: &protocol.Cine{Playing: true, FPS: 25}}},
			},
			func(s *protocol.ViewState) {
				s.Window = protocol.Window{Center: 40, Width: 400}
				s.Transform = protocol.Transform{Zoom: 2, PanX: 0.1, Rotation: 90, Invert: true}
				s.Cine = protocol.Cine{Playing: true, FPS: 25}
			}},
		{"pointer names its participant", protocol.DefaultViewState(),
			[]protocol.OpApplied{{By: "p2", Op: protocol.Op{Kind: protocol.OpPointer, Pointer: &protocol.Pointer{X: 0.5, Y: 0.25, Visible: true, By: "forged"}}}},
			func(s *protocol.ViewState) { s.Pointer = &protocol.Pointer{X: 0.5, Y: 0.25, Visible: true, By: "p2"} }},
		{"annotation add", protocol.DefaultViewState(),
			[]protocol.OpApplied{{By: "p1", Time: t0, Op: protocol.Op{Kind: protocol.OpAnnotationAdd, Annotation: &line}}},
			func(s *protocol.ViewState) { s.Annotation["a1"] = added }},
		{"annotation add into a snapshot without annotations", protocol.ViewState{Transform: protocol.Transform{Zoom: 1}},
			[]protocol.OpApplied{{By: "p1", Time: t0, Op: protocol.Op{Kind: protocol.OpAnnotationAdd, Annotation: &line}}},
			func(s *protocol.ViewState) { s.Annotation = map[string]protocol.Annotation{"a1": added} }},
		{"annotation update by the driver keeps author and creation", withLine,
			[]protocol.OpApplied{{By: "p2", Time: t1, Op: protocol.Op{Kind: protocol.OpAnnotationUpdate, Annotation: &moved}}},
			func(s *protocol.ViewState) { s.Annotation["a1"] = updated }},
		{"annotation update of an unknown ID", withLine,
			[]protocol.OpApplied{{By: "p2", Time: t1, Op: protocol.Op{Kind: protocol.OpAnnotationUpdate, Annotation: &protocol.Annotation{ID: "zz", Kind: "line"}}}},
			func(*protocol.ViewState) {}},
		{"annotation delete", withLine,
			[]protocol.OpApplied{{By: "p1", Op: protocol.Op{Kind: protocol.OpAnnotationDelete, AnnotationID: "a1"}}},
			func(s *protocol.ViewState) { delete(s.Annotation, "a1") }},
		{"annotation delete of an unknown ID", withLine,
			[]protocol.OpApplied{{By: "p1", Op: protocol.Op{Kind: protocol.OpAnnotationDelete, AnnotationID: "zz"}}},
			func(*protocol.ViewState) {}},
		{"reset keeps image, pointer and annotations", changed,
			[]protocol.OpApplied{{Op: protocol.Op{Kind: protocol.OpReset}}},
			func(s *protocol.ViewState) {
				s.Window, s.Transform, s.Cine = protocol.Window{}, protocol.Transform{Zoom: 1}, protocol.Cine{}
			}},
		{"missing fields and unknown kinds change nothing", changed,
			[]protocol.OpApplied{
				{Op: protocol.Op{Kind: protocol.OpWindow}},
				{Op: protocol.Op{Kind: protocol.OpImage}},
				{Op: protocol.Op{Kind: protocol.OpPointer}},
				{Op: protocol.Op{Kind: protocol.OpAnnotationAdd}},
				{Op: protocol.Op{Kind: protocol.OpAnnotationUpdate}},
				{Op: protocol.Op{Kind: "zoom-to-fit"}},
			},
			func(*protocol.ViewState) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cloneState(tt.before)
			for _, a := range tt.ops {
				ApplyOp(&got, a)
			}
			want := cloneState(tt.before)
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestApplyOpSharesNothingWithTheOp(t *testing.T) {
	an := protocol.Annotation{ID: "a", Kind: "line", Points: []protocol.Point{{X: 0.1, Y: 0.1}}}
	ptr := protocol.Pointer{X: 0.1}
	s := protocol.DefaultViewState()
	ApplyOp(&s, protocol.OpApplied{Op: protocol.Op{Kind: protocol.OpAnnotationAdd, Annotation: &an}})
	ApplyOp(&s, protocol.OpApplied{Op: protocol.Op{Kind: protocol.OpPointer, Pointer: &ptr}})
	an.Points[0].X, ptr.X = 0.9, 0.9
	if s.Annotation["a"].Points[0].X != 0.1 || s.Pointer.X != 0.1 {
		t.Errorf("the view changed with the op it came from: %+v", s)
	}
	c := cloneState(s)
	c.Annotation["a"].Points[0].X, c.Pointer.X = 0.5, 0.5
	if s.Annotation["a"].Points[0].X != 0.1 || s.Pointer.X != 0.1 {
		t.Errorf("the view changed with its copy: %+v", s)
	}
}

// FuzzApplyOp: whatever op.applied the server sends, decoding and applying it does not panic.
func FuzzApplyOp(f *testing.F) {
	f.Add([]byte(`{"seq":1,"by":"p1","op":{"kind":"annotation.add","annotation":{"id":"a","kind":"line","points":[{"x":0,"y":0}]}}}`))
	f.Add([]byte(`{"seq":2,"op":{"kind":"annotation.update","annotation":{"id":"a"}}}`))
	f.Add([]byte(`{"seq":3,"op":{"kind":"window"}}`))
	f.Add([]byte(`{"seq":4,"op":{"kind":"reset"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a protocol.OpApplied
		if json.Unmarshal(b, &a) != nil {
			return
		}
		s := protocol.DefaultViewState()
		ApplyOp(&s, a)
		ApplyOp(&s, a)
		_ = cloneState(s)
	})
}
