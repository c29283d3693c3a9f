package protocol

import (
	"encoding/json"
	"testing"
)

// TestDecodeBrowserSignal: what Chromium sends (RTCIceCandidate.toJSON has usernameFragment)
// decodes strictly; an unknown field does not.
func TestDecodeBrowserSignal(t *testing.T) {
	var s Signal
	if err := Decode(json.RawMessage(`{"pc":"sub","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"aB3d"}}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Candidate == nil || s.Candidate.UsernameFragment == nil || *s.Candidate.UsernameFragment != "aB3d" {
		t.Fatalf("%+v", s.Candidate)
	}
	if err := Decode(json.RawMessage(`{"pc":"sub","bogus":1}`), &s); err == nil {
		t.Fatal("an unknown field was accepted")
	}
	if err := Decode(json.RawMessage(`{"pc":"sub"} {}`), &s); err == nil {
		t.Fatal("trailing data was accepted")
	}
}

func TestOpValidate(t *testing.T) {
	uid := "1.2.840.113619.2.55.3"
	for _, c := range []struct {
		name string
		op   Op
		ok   bool
	}{
		{"image", Op{Kind: OpImage, Image: &ImageRef{Study: uid, Series: uid, Instance: uid, Frame: 3}}, true},
		{"image without study", Op{Kind: OpImage, Image: &ImageRef{Frame: 3}}, false},
		{"image with a bad UID", Op{Kind: OpImage, Image: &ImageRef{Study: "1.2.x", Series: uid, Instance: uid}}, false},
		{"negative frame", Op{Kind: OpImage, Image: &ImageRef{Study: uid, Frame: -1}}, false},
		{"window", Op{Kind: OpWindow, Window: &Window{Center: -600, Width: 1500}}, true},
		{"negative width", Op{Kind: OpWindow, Window: &Window{Center: 0, Width: -1}}, false},
		{"window and transform", Op{Kind: OpWindow, Window: &Window{Width: 1}, Transform: &Transform{Zoom: 1}}, false},
		{"transform", Op{Kind: OpTransform, Transform: &Transform{Zoom: 2, Rotation: 270, Invert: true}}, true},
		{"zoom 0", Op{Kind: OpTransform, Transform: &Transform{Zoom: 0}}, false},
		{"rotation 45", Op{Kind: OpTransform, Transform: &Transform{Zoom: 1, Rotation: 45}}, false},
		{"cine", Op{Kind: OpCine, Cine: &Cine{Playing: true, FPS: 25}}, true},
		{"cine 1000 fps", Op{Kind: OpCine, Cine: &Cine{FPS: 1000}}, false},
		{"pointer", Op{Kind: OpPointer, Pointer: &Pointer{X: .5, Y: .5, Visible: true}}, true},
		{"pointer far away", Op{Kind: OpPointer, Pointer: &Pointer{X: 5}}, false},
		{"arrow", Op{Kind: OpAnnotationAdd, Annotation: &Annotation{ID: "a1", Kind: "arrow", Points: []Point{{.1, .1}, {.2, .2}}}}, true},
		{"unknown shape", Op{Kind: OpAnnotationAdd, Annotation: &Annotation{ID: "a1", Kind: "star", Points: []Point{{.1, .1}}}}, false},
		{"no points", Op{Kind: OpAnnotationAdd, Annotation: &Annotation{ID: "a1", Kind: "line"}}, false},
		{"too many points", Op{Kind: OpAnnotationAdd, Annotation: &Annotation{ID: "a1", Kind: "polyline", Points: make([]Point, MaxAnnotationPoints+1)}}, false},
		{"delete", Op{Kind: OpAnnotationDelete, AnnotationID: "a1"}, true},
		{"delete without id", Op{Kind: OpAnnotationDelete}, false},
		{"reset", Op{Kind: OpReset}, true},
		{"reset with a field", Op{Kind: OpReset, Window: &Window{}}, false},
		{"unknown", Op{Kind: "explode"}, false},
	} {
		if err := c.op.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// FuzzOp: any JSON a client sends as an op is decoded and validated without panicking, and a
// valid op survives encoding and decoding unchanged.
func FuzzOp(f *testing.F) {
	f.Add(`{"kind":"window","window":{"center":40,"width":400}}`)
	f.Add(`{"kind":"annotation.add","annotation":{"id":"x","kind":"angle","points":[{"x":0,"y":0},{"x":1,"y":1},{"x":0.5,"y":0}]}}`)
	f.Add(`{"kind":"image","image":{"study":"1.2","series":"1.2.3","instance":"1.2.3.4","frame":1e999}}`)
	f.Fuzz(func(t *testing.T, data string) {
		var op Op
		if Decode(json.RawMessage(data), &op) != nil {
			return
		}
		if op.Validate() != nil {
			return
		}
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatalf("a valid op does not encode: %v", err)
		}
		var again Op
		if err := Decode(b, &again); err != nil || again.Validate() != nil {
			t.Fatalf("a valid op does not survive a round trip: %v", err)
		}
	})
}
