// Package protocol holds the wire types of Sanping's live consultation protocol (version 1):
// the JSON messages on the signaling websocket, the shared view state (三屏联动) and the
// operations that change it. The server (server/signal, server/room) and the Go participant
// (client/live) both import it; docs/protocol.md describes it for other clients.
package protocol

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the protocol version a client names in its hello.
const Version = 1

// Message is one websocket text frame: a type, an optional request ID the answer or error
// echoes, and a type-specific payload.
type Message struct {
	Type string          `json:"type"`
	ID   uint64          `json:"id,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Message types. Client to server:
const (
	TypeHello   = "hello"   // Hello: first message; starts or resumes a participant
	TypeSignal  = "signal"  // Signal: SDP or ICE for one of the two peer connections
	TypeOp      = "op"      // Op: a view operation (the server answers with OpApplied to all)
	TypeControl = "control" // Control: ask for, give or take the driver's seat
	TypeChat    = "chat"    // ChatSend
	TypeQuality = "quality" // Quality: the client's own view of its connection (optional)
	TypeMedia   = "media"   // Media: which of its sources the participant has muted
	TypeLeave   = "leave"   // no payload: leaving for good (no grace period)
	TypePing    = "ping"    // no payload; answered with pong (latency probes)
)

// Server to client:
const (
	TypeWelcome     = "welcome"       // Welcome: answer to hello
	TypeSnapshot    = "snapshot"      // Snapshot: the whole view state at a sequence number
	TypeOpApplied   = "op.applied"    // OpApplied: an operation in the room's order
	TypeParticipant = "participant"   // ParticipantEvent: joined, updated, left
	TypeControlled  = "control.state" // ControlState: who drives, who asks
	TypeChatMessage = "chat.message"  // ChatMessage
	TypeError       = "error"         // Error: a request refused; the connection stays
	TypePong        = "pong"
	TypeBye         = "bye" // Bye: the room is closing or this participant was removed
)

// Peer connections: each participant has two, so neither side ever offers into the other's
// offer (no glare): it publishes on "pub" (the client offers) and receives on "sub" (the
// server offers, again whenever the set of forwarded tracks changes).
const (
	PCPublish   = "pub"
	PCSubscribe = "sub"
)

// Hello starts a participant (Resume empty) or resumes one within the grace period.
type Hello struct {
	Protocol int    `json:"protocol"`
	Resume   string `json:"resume,omitempty"` // the ResumeToken from an earlier Welcome
	// Client describes the software, e.g. "sanping-web/1 Chromium 120" (session log).
	Client string `json:"client,omitempty"`
	// KeepMedia, on a resume: the client still has its two peer connections from before the
	// drop (only the websocket went) and the server keeps its side of them if it can. Without
	// it (a reloaded page) the server starts both afresh: the client offers "pub" again and
	// gets a new "sub" offer.
	KeepMedia bool `json:"keepMedia,omitempty"`
}

// ICEServer is a STUN or TURN server for the client's peer connections (TURN credentials are
// short-lived and issued for this participant).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Welcome answers Hello.
type Welcome struct {
	Participant  string         `json:"participant"`  // this participant's ID in the room
	ResumeToken  string         `json:"resumeToken"`  // present it in Hello.Resume after a drop
	Resumed      bool           `json:"resumed"`      // the earlier identity and state were kept
	GraceSeconds int            `json:"graceSeconds"` // how long a dropped participant keeps its place
	ICEServers   []ICEServer    `json:"iceServers"`
	Consultation int64          `json:"consultation"`
	Participants []Participant  `json:"participants"` // everyone in the room, this one included
	Snapshot     Snapshot       `json:"snapshot"`
	Chat         []ChatMessage  `json:"chat"` // the room's chat so far (newest last, at most 200)
	Control      ControlState   `json:"control"`
	Limits       map[string]int `json:"limits,omitempty"` // e.g. "opsPerSecond"
}

// Participant is someone in the room.
type Participant struct {
	ID          string  `json:"id"`
	UserID      int64   `json:"userId,omitempty"`
	Name        string  `json:"name"`
	Role        string  `json:"role"` // doctor, clinic, admin
	Institution string  `json:"institution,omitempty"`
	Connected   bool    `json:"connected"` // false while in the grace period
	Tracks      []Track `json:"tracks"`
	Connection  string  `json:"connection,omitempty"` // udp, tcp or relay, once media flows
	Quality     string  `json:"quality,omitempty"`    // good, weak or lost (QualityGood, ...); absent until measured and while not connected
	// Muted names the sources (LabelMicrophone, LabelCamera, LabelImaging) the participant
	// has turned off itself, as its last Media message said; its tracks stay published.
	Muted []string `json:"muted,omitempty"`
	// Uplink is UplinkReduced or UplinkAudioOnly while the participant's own uplink is too
	// thin for all it publishes (its last Media message); absent when it sends everything.
	Uplink   string    `json:"uplink,omitempty"`
	JoinedAt time.Time `json:"joinedAt"`
}

// Participant quality levels, from the server's figures every 5 s (docs/protocol.md).
const (
	QualityGood = "good"
	QualityWeak = "weak" // loss over 3%, RTT over 400 ms or jitter over 50 ms
	QualityLost = "lost" // nothing received for 5 s while media should flow
)

// Track is a published media track.
type Track struct {
	ID string `json:"id"` // the track ID in the SDP (msid); the msid stream ID is the publishing participant
	// Participant publishes it (set by the server in subscription offers and participant events).
	Participant string `json:"participant,omitempty"`
	Kind        string `json:"kind"`  // audio or video
	Label       string `json:"label"` // camera, microphone, imaging (ultrasound capture or screen)
	Codec       string `json:"codec,omitempty"`
	// Layers are the simulcast RIDs published (empty: one layer).
	Layers []string `json:"layers,omitempty"`
}

// Track labels.
const (
	LabelMicrophone = "microphone"
	LabelCamera     = "camera"
	LabelImaging    = "imaging"
)

// Signal carries SDP or an ICE candidate for one peer connection.
type Signal struct {
	PC        string           `json:"pc"` // PCPublish or PCSubscribe
	SDP       *SessionDesc     `json:"sdp,omitempty"`
	Candidate *ICECandidate    `json:"candidate,omitempty"`
	Restart   bool             `json:"restart,omitempty"` // client asks the server for an ICE-restart offer on "sub"
	Tracks    map[string]Track `json:"tracks,omitempty"`  // pub offers: what each offered track is, by track ID (msid)
}

// SessionDesc is an SDP offer or answer (RTCSessionDescriptionInit).
type SessionDesc struct {
	Type string `json:"type"` // offer or answer
	SDP  string `json:"sdp"`
}

// ICECandidate is RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"` // browsers send it (RTCIceCandidate.toJSON)
}

// ViewState is the room's authoritative view: every screen shows this.
type ViewState struct {
	Image      ImageRef              `json:"image"`
	Window     Window                `json:"window"`
	Transform  Transform             `json:"transform"`
	Cine       Cine                  `json:"cine"`
	Pointer    *Pointer              `json:"pointer,omitempty"`
	Annotation map[string]Annotation `json:"annotations"`
}

// ImageRef names the image shown: study, series, instance and frame (0-based).
type ImageRef struct {
	Study    string `json:"study,omitempty"`
	Series   string `json:"series,omitempty"`
	Instance string `json:"instance,omitempty"`
	Frame    int    `json:"frame"`
}

// Window is the VOI window (PS3.3 C.11.2): width 0 means the image's own default.
type Window struct {
	Center float64 `json:"center"`
	Width  float64 `json:"width"`
}

// Transform is how the image sits in the viewport. Pan is in image widths/heights from centre.
type Transform struct {
	Zoom     float64 `json:"zoom"` // 1 = fit to viewport
	PanX     float64 `json:"panX"`
	PanY     float64 `json:"panY"`
	Rotation int     `json:"rotation"` // 0, 90, 180, 270 clockwise
	FlipH    bool    `json:"flipH"`
	FlipV    bool    `json:"flipV"`
	Invert   bool    `json:"invert"`
}

// Cine is frame playback.
type Cine struct {
	Playing bool    `json:"playing"`
	FPS     float64 `json:"fps"`
}

// Pointer is the laser pointer, in image coordinates normalized to 0..1 (x right, y down).
type Pointer struct {
	X       float64 `json:"x"`
	Y       float64 `json:"y"`
	Visible bool    `json:"visible"`
	By      string  `json:"by,omitempty"` // participant; set by the server
}

// Point is an image position normalized to 0..1.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Annotation is a drawing or measurement on one image.
type Annotation struct {
	ID     string   `json:"id"` // chosen by the client that creates it (unique in the room)
	Kind   string   `json:"kind"`
	Image  ImageRef `json:"image"` // the image it is drawn on
	Points []Point  `json:"points"`
	Text   string   `json:"text,omitempty"`
	// Measurement, e.g. "23.4 mm" (computed by the author's client from Pixel Spacing).
	Value   string    `json:"value,omitempty"`
	Author  string    `json:"author,omitempty"` // participant; set by the server
	Created time.Time `json:"created,omitzero"` // set by the server
	Updated time.Time `json:"updated,omitzero"` // set by the server
}

// Annotation kinds.
var AnnotationKinds = []string{"line", "arrow", "rect", "ellipse", "polyline", "text", "length", "angle"}

// Op kinds.
const (
	OpImage            = "image"     // show another image or frame (Image)
	OpWindow           = "window"    // Window
	OpTransform        = "transform" // Transform (all fields)
	OpCine             = "cine"      // Cine
	OpPointer          = "pointer"   // Pointer (anyone; coalesced to at most 30 a second)
	OpAnnotationAdd    = "annotation.add"
	OpAnnotationUpdate = "annotation.update" // by its author or the driver
	OpAnnotationDelete = "annotation.delete" // AnnotationID; by its author or the driver
	OpReset            = "reset"             // window, transform and cine back to defaults
)

// Op is a view operation. Kind says which one field is set.
type Op struct {
	Kind         string      `json:"kind"`
	Image        *ImageRef   `json:"image,omitempty"`
	Window       *Window     `json:"window,omitempty"`
	Transform    *Transform  `json:"transform,omitempty"`
	Cine         *Cine       `json:"cine,omitempty"`
	Pointer      *Pointer    `json:"pointer,omitempty"`
	Annotation   *Annotation `json:"annotation,omitempty"`
	AnnotationID string      `json:"annotationId,omitempty"`
	// Sent is the client's clock when it sent the op (ms since the epoch), echoed back in
	// OpApplied so clients can measure sync latency; the server never relies on it.
	Sent int64 `json:"sent,omitempty"`
}

// OpApplied is an op in the room's order. Seq starts at 1 and has no gaps; a client that sees
// a gap asks for a snapshot (by reconnecting).
type OpApplied struct {
	Seq  uint64    `json:"seq"`
	By   string    `json:"by"` // participant
	Op   Op        `json:"op"`
	Time time.Time `json:"time"`
}

// Snapshot is the whole view state as of Seq (the last op applied).
type Snapshot struct {
	Seq   uint64    `json:"seq"`
	State ViewState `json:"state"`
}

// Control changes who drives. The driver may "give" the seat to another participant or
// "release" it (to the default driver); others "request" it, which the driver sees in
// ControlState.Requests; an admin or the assigned doctor may "take" it.
type Control struct {
	Action string `json:"action"` // request, give, release, take, cancel
	To     string `json:"to,omitempty"`
}

// ControlState says who drives and who asked to.
type ControlState struct {
	Driver   string   `json:"driver"`
	Requests []string `json:"requests"`
}

// Media tells the room which of the participant's sources it has turned off (muted
// microphone, camera off), so the others show it instead of guessing from silence.
type Media struct {
	Muted []string `json:"muted"` // labels: microphone, camera, imaging; empty: nothing muted
	// Uplink says what the participant's uplink lets it send (UplinkFull, UplinkReduced,
	// UplinkAudioOnly); absent from older clients, which is UplinkFull.
	Uplink string `json:"uplink,omitempty"`
}

// Uplink states: how a publisher with a thin uplink cut its camera to keep its imaging feed
// (docs/protocol.md "Muted sources").
const (
	UplinkFull      = "full"       // everything sent as published
	UplinkReduced   = "reduced"    // the camera at its lower layers only
	UplinkAudioOnly = "audio-only" // the camera's video paused: its microphone only
)

// ChatSend is a chat message from a client.
type ChatSend struct {
	Text string `json:"text"`
}

// ChatMessage is a stored chat message.
type ChatMessage struct {
	ID          int64     `json:"id"`
	Participant string    `json:"participant"`
	Name        string    `json:"name"`
	Text        string    `json:"text"`
	Time        time.Time `json:"time"`
}

// ParticipantEvent says someone joined, changed (tracks, connection, quality) or left.
type ParticipantEvent struct {
	Event       string      `json:"event"` // joined, updated, disconnected, left
	Participant Participant `json:"participant"`
}

// Quality is one participant's connection figures (the server computes its own from RTCP
// every 5 s; clients may add theirs).
type Quality struct {
	BitrateIn  int64   `json:"bitrateIn"`  // bit/s received by the server from this participant
	BitrateOut int64   `json:"bitrateOut"` // bit/s sent by the server to it
	Loss       float64 `json:"loss"`       // fraction lost, 0..1
	RTTms      float64 `json:"rttMs"`
	JitterMs   float64 `json:"jitterMs"`
	FPS        float64 `json:"fps"`
	// Width and Height are the resolution of the video it sends, when known.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// Error refuses one request; Ref is the request's ID.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     uint64 `json:"ref,omitempty"`
}

// Error codes.
const (
	ErrBadMessage = "bad-message" // not JSON, unknown type, wrong fields: the connection closes after 3
	ErrNotDriver  = "not-driver"  // a view op by someone who does not drive
	ErrForbidden  = "forbidden"
	ErrInvalid    = "invalid"    // a well-formed op with values out of range
	ErrRateLimit  = "rate-limit" // flooding: the connection closes if it goes on
	ErrNotFound   = "not-found"
	ErrConflict   = "conflict"
)

// Bye says why the server ends the connection.
type Bye struct {
	Reason string `json:"reason"`
}

// Limits on what a client may send.
const (
	MaxMessageBytes     = 64 << 10
	MaxChatRunes        = 2000
	MaxAnnotationPoints = 256
	MaxAnnotationText   = 500
	MaxAnnotations      = 500
)

// Encode makes a Message of type t with data as its payload.
func Encode(t string, id uint64, data any) ([]byte, error) {
	m := Message{Type: t, ID: id}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", t, err)
		}
		m.Data = b
	}
	return json.Marshal(m)
}

// Decode reads data strictly: unknown fields are an error.
func Decode(data json.RawMessage, v any) error {
	if len(data) == 0 {
		return fmt.Errorf("missing data")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

func finite(vals ...float64) bool {
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

func validUID(s string) bool {
	if len(s) > 64 {
		return false
	}
	return strings.Trim(s, "0123456789.") == ""
}

func (p Point) valid() bool {
	return finite(p.X, p.Y) && p.X >= -1 && p.X <= 2 && p.Y >= -1 && p.Y <= 2
}

// Validate checks an op's values; it does not check who may apply it.
func (o *Op) Validate() error {
	one := 0
	for _, set := range []bool{o.Image != nil, o.Window != nil, o.Transform != nil, o.Cine != nil, o.Pointer != nil, o.Annotation != nil} {
		if set {
			one++
		}
	}
	need := func(ok bool) error {
		if !ok || one > 1 {
			return fmt.Errorf("op %s needs exactly its own field", o.Kind)
		}
		return nil
	}
	switch o.Kind {
	case OpImage:
		if err := need(o.Image != nil); err != nil {
			return err
		}
		im := o.Image
		if !validUID(im.Study) || !validUID(im.Series) || !validUID(im.Instance) || im.Study == "" {
			return fmt.Errorf("image: study, series and instance must be DICOM UIDs")
		}
		if im.Frame < 0 || im.Frame > 100000 {
			return fmt.Errorf("image: frame out of range")
		}
	case OpWindow:
		if err := need(o.Window != nil); err != nil {
			return err
		}
		w := o.Window
		if !finite(w.Center, w.Width) || w.Width < 0 || math.Abs(w.Center) > 1e7 || w.Width > 1e7 {
			return fmt.Errorf("window: center and width must be finite, width >= 0")
		}
	case OpTransform:
		if err := need(o.Transform != nil); err != nil {
			return err
		}
		t := o.Transform
		if !finite(t.Zoom, t.PanX, t.PanY) || t.Zoom < 0.05 || t.Zoom > 50 || math.Abs(t.PanX) > 10 || math.Abs(t.PanY) > 10 {
			return fmt.Errorf("transform: zoom 0.05..50, pan -10..10")
		}
		if t.Rotation%90 != 0 || t.Rotation < 0 || t.Rotation >= 360 {
			return fmt.Errorf("transform: rotation is 0, 90, 180 or 270")
		}
	case OpCine:
		if err := need(o.Cine != nil); err != nil {
			return err
		}
		if !finite(o.Cine.FPS) || o.Cine.FPS < 0 || o.Cine.FPS > 120 {
			return fmt.Errorf("cine: fps 0..120")
		}
	case OpPointer:
		if err := need(o.Pointer != nil); err != nil {
			return err
		}
		if !(Point{o.Pointer.X, o.Pointer.Y}).valid() {
			return fmt.Errorf("pointer: x and y in -1..2")
		}
	case OpAnnotationAdd, OpAnnotationUpdate:
		if err := need(o.Annotation != nil); err != nil {
			return err
		}
		a := o.Annotation
		if a.ID == "" || len(a.ID) > 64 || !utf8.ValidString(a.ID) {
			return fmt.Errorf("annotation: id of 1-64 bytes required")
		}
		known := false
		for _, k := range AnnotationKinds {
			known = known || a.Kind == k
		}
		if !known {
			return fmt.Errorf("annotation: unknown kind %q", a.Kind)
		}
		if len(a.Points) == 0 || len(a.Points) > MaxAnnotationPoints {
			return fmt.Errorf("annotation: 1-%d points", MaxAnnotationPoints)
		}
		for _, p := range a.Points {
			if !p.valid() {
				return fmt.Errorf("annotation: points in -1..2")
			}
		}
		if utf8.RuneCountInString(a.Text) > MaxAnnotationText || utf8.RuneCountInString(a.Value) > 64 || !utf8.ValidString(a.Text+a.Value) {
			return fmt.Errorf("annotation: text too long")
		}
		if a.Image.Study != "" && (!validUID(a.Image.Study) || !validUID(a.Image.Series) || !validUID(a.Image.Instance)) {
			return fmt.Errorf("annotation: image must be DICOM UIDs")
		}
	case OpAnnotationDelete:
		if one != 0 || o.AnnotationID == "" || len(o.AnnotationID) > 64 {
			return fmt.Errorf("annotation.delete needs annotationId only")
		}
	case OpReset:
		if one != 0 {
			return fmt.Errorf("reset takes no fields")
		}
	default:
		return fmt.Errorf("unknown op kind %q", o.Kind)
	}
	return nil
}

// DefaultViewState is the state of a new room.
func DefaultViewState() ViewState {
	return ViewState{Transform: Transform{Zoom: 1}, Annotation: map[string]Annotation{}}
}
