package live

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/sanping/sanping/protocol"
)

const (
	h264Interval     = time.Second / 15 // Annex B files carry no timing
	maxFrameInterval = 10 * time.Second // longer gaps between timestamps are treated as errors in the file
	maxFrameBytes    = 16 << 20
)

var errNoFrames = errors.New("no frames")

// frame is one video frame (an access unit for H.264) or one Opus packet, with its
// presentation time from the start of the file.
type frame struct {
	data []byte
	pts  time.Duration
}

// frameReader reads a file's frames in order; io.EOF ends the file.
type frameReader interface {
	next() (frame, error)
}

// source is a media file to publish.
type source struct {
	path  string
	label string
	codec webrtc.RTPCodecCapability
	open  func(io.Reader) (frameReader, error)
	// live is a stream (stdin, a named pipe) read as it comes, its header already read.
	live   frameReader
	closer io.Closer
}

// liveSource recognizes a live video source: "-", "ivf:-", "h264:-", or a path (with or
// without such a prefix) that is a named pipe or a character device. It returns the path
// with its prefix removed, and the format ("" to go by the extension).
func liveSource(path string) (p, format string, ok bool) {
	p = path
	for _, f := range []string{"ivf", "h264"} {
		if strings.HasPrefix(p, f+":") {
			p, format = p[len(f)+1:], f
			break
		}
	}
	if p == "-" {
		if format == "" {
			format = "ivf"
		}
		return p, format, true
	}
	fi, err := os.Stat(p)
	return p, format, err == nil && fi.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) != 0
}

// openSource recognizes a file by its extension and reads its first frame, so that a wrong
// file fails Join rather than the call. A live source has its header read (IVF) instead.
func openSource(path, label string, stdin io.Reader) (*source, error) {
	if p, format, ok := liveSource(path); ok {
		return openLive(p, format, label, stdin)
	}
	s := &source{path: path, label: label}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ivf":
		s.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		s.open = newIVFReader
	case ".h264", ".264":
		s.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline}
		s.open = newH264Reader
	case ".ogg", ".opus":
		s.codec = opus
		s.open = newOggReader
	default:
		return nil, fmt.Errorf("live: %s: not .ivf (VP8), .h264 (Annex B) or .ogg (Opus)", path)
	}
	audio := label == protocol.LabelMicrophone
	if audio != strings.HasPrefix(s.codec.MimeType, "audio/") {
		return nil, fmt.Errorf("live: %s: wrong kind of media for %s", path, label)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	defer f.Close()
	r, err := s.open(f)
	if err == nil {
		_, err = r.next()
		if errors.Is(err, io.EOF) {
			err = errNoFrames
		}
	}
	if err != nil {
		return nil, fmt.Errorf("live: %s: %w", path, err)
	}
	return s, nil
}

func openLive(path, format, label string, stdin io.Reader) (*source, error) {
	if label == protocol.LabelMicrophone {
		return nil, fmt.Errorf("live: %s: a live source is for video only", path)
	}
	if format == "" {
		format = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	}
	s := &source{path: path, label: label}
	switch format {
	case "ivf":
		s.codec, s.open = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, newIVFReader
	case "h264", "264":
		s.codec, s.open = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline}, newH264Reader
	default:
		return nil, fmt.Errorf("live: %s: say the stream's format: ivf:%s or h264:%s", path, path, path)
	}
	r := stdin
	if path != "-" {
		f, err := os.Open(path) // a named pipe: waits for its writer
		if err != nil {
			return nil, fmt.Errorf("live: %w", err)
		}
		r, s.closer = f, f
	} else if r == nil {
		r = os.Stdin
	}
	fr, err := s.open(r)
	if err != nil {
		if s.closer != nil {
			s.closer.Close()
		}
		return nil, fmt.Errorf("live: %s: %w", path, err)
	}
	s.live = fr
	return s, nil
}

// localTrack is a file being published.
type localTrack struct {
	src   *source
	track *webrtc.TrackLocalStaticSample
	info  protocol.Track
	// wantKey: the server asked for a keyframe (PLI or FIR, a new subscriber): a file cannot
	// make one, so playing jumps ahead to the file's next keyframe, as an encoder would send
	// one at once.
	wantKey atomic.Bool
}

// frameIsKey says whether a whole video frame of the codec is a keyframe; nil for audio.
func frameIsKey(mime string) func([]byte) bool {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		// RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame.
		return func(b []byte) bool { return len(b) > 0 && b[0]&0x01 == 0 }
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return func(b []byte) bool {
			for i := 0; i+3 < len(b); i++ {
				if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
					if t := b[i+3] & 0x1f; t == 5 || t == 7 {
						return true
					}
				}
			}
			return false
		}
	}
	return nil
}

// newLocalTrack makes the track of a source. Track IDs are random: the server's track lists
// are keyed by them across the whole room.
func newLocalTrack(s *source, participant string) (*localTrack, error) {
	var b [6]byte
	rand.Read(b[:])
	id := s.label + "-" + hex.EncodeToString(b[:])
	t, err := webrtc.NewTrackLocalStaticSample(s.codec, id, participant)
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	kind := "video"
	if strings.HasPrefix(s.codec.MimeType, "audio/") {
		kind = "audio"
	}
	return &localTrack{src: s, track: t, info: protocol.Track{ID: id, Kind: kind, Label: s.label}}, nil
}

// play publishes a file in a loop, from when the pub connection first comes up (so that
// the first frame the server sees is the file's first keyframe) until the participant stops.
func (p *Participant) play(lt *localTrack) {
	defer p.wg.Done()
	if lt.src.live != nil {
		p.playLive(lt)
		return
	}
	select {
	case <-p.pubUp:
	case <-p.ctx.Done():
		return
	}
	f, err := os.Open(lt.src.path)
	if err != nil {
		p.log.Error("live: publishing", "file", lt.src.path, "err", err)
		return
	}
	defer f.Close()
	l, err := newLoop(f, lt.src.open)
	if err == nil {
		var jump func() (time.Duration, bool)
		if isKey := frameIsKey(lt.src.codec.MimeType); isKey != nil {
			jump = func() (time.Duration, bool) {
				if !lt.wantKey.Swap(false) {
					return 0, false
				}
				return l.skipToKey(isKey)
			}
		}
		err = pace(p.ctx, l.next, lt.track.WriteSample, jump)
	}
	if err != nil && p.ctx.Err() == nil {
		p.log.Error("live: publishing", "file", lt.src.path, "err", err)
	}
}

// playLive publishes a live source as its frames come. Frames before the pub connection is up
// are dropped (the source is not held back), and sending starts at a keyframe.
func (p *Participant) playLive(lt *localTrack) {
	if lt.src.closer != nil {
		defer lt.src.closer.Close()
		context.AfterFunc(p.ctx, func() { lt.src.closer.Close() })
	}
	isKey := frameIsKey(lt.src.codec.MimeType)
	started := false
	interval, last := h264Interval, time.Duration(-1)
	for {
		f, err := lt.src.live.next()
		if err != nil {
			if p.ctx.Err() == nil {
				if errors.Is(err, io.EOF) {
					p.log.Info("live: the video source ended", "source", lt.src.path)
				} else {
					p.log.Error("live: publishing", "source", lt.src.path, "err", err)
				}
			}
			return
		}
		if last >= 0 {
			if d := f.pts - last; d > 0 && d <= maxFrameInterval {
				interval = d
			}
		}
		last = f.pts
		select {
		case <-p.pubUp:
		case <-p.ctx.Done():
			return
		default:
			continue // not connected yet
		}
		lt.wantKey.Store(false) // a live source makes its keyframes when it makes them
		if !started && !isKey(f.data) {
			continue
		}
		started = true
		if err := lt.track.WriteSample(media.Sample{Data: f.data, Duration: interval}); err != nil {
			if p.ctx.Err() == nil {
				p.log.Error("live: publishing", "source", lt.src.path, "err", err)
			}
			return
		}
	}
}

// pace writes samples in real time: each when it is due, counted from the first. jump, if
// not nil, may move playing ahead (to a keyframe): it returns the new next frame's due time,
// which is then due at once.
func pace(ctx context.Context, next func() (media.Sample, time.Duration, error), write func(media.Sample) error, jump func() (time.Duration, bool)) error {
	start := time.Now()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		if jump != nil {
			if due, ok := jump(); ok {
				start = time.Now().Add(-due)
			}
		}
		s, due, err := next()
		if err != nil {
			return err
		}
		if wait := time.Until(start.Add(due)); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := write(s); err != nil {
			return err
		}
	}
}

// loop plays a file's frames forever, starting again at the end. It reads one frame ahead:
// a sample's duration is the time to the next frame, and the last frame of a pass lasts as
// long as the one before it.
type loop struct {
	rs       io.ReadSeeker
	open     func(io.Reader) (frameReader, error)
	r        frameReader
	pending  frame
	due      time.Duration // when pending is due, from the start of playing
	interval time.Duration
}

func newLoop(rs io.ReadSeeker, open func(io.Reader) (frameReader, error)) (*loop, error) {
	l := &loop{rs: rs, open: open, interval: h264Interval}
	if err := l.rewind(); err != nil {
		return nil, err
	}
	return l, nil
}

// rewind starts a pass: it opens the file from its start and reads the first frame.
func (l *loop) rewind() error {
	if _, err := l.rs.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r, err := l.open(l.rs)
	if err != nil {
		return err
	}
	f, err := r.next()
	if errors.Is(err, io.EOF) {
		return errNoFrames
	}
	if err != nil {
		return err
	}
	l.r, l.pending = r, f
	return nil
}

// skipToKey drops frames until the next one is a keyframe (at most one pass of the file) and
// returns when that one was due; false if the file has none.
func (l *loop) skipToKey(isKey func([]byte) bool) (time.Duration, bool) {
	for range 100000 {
		if isKey(l.pending.data) {
			return l.due, true
		}
		if _, _, err := l.next(); err != nil {
			return 0, false
		}
	}
	return 0, false
}

// next returns the next sample and when it is due.
func (l *loop) next() (media.Sample, time.Duration, error) {
	cur := l.pending
	f, err := l.r.next()
	switch {
	case errors.Is(err, io.EOF):
		if err := l.rewind(); err != nil {
			return media.Sample{}, 0, err
		}
	case err != nil:
		return media.Sample{}, 0, err
	default:
		if d := f.pts - cur.pts; d > 0 && d <= maxFrameInterval {
			l.interval = d
		}
		l.pending = f
	}
	due := l.due
	l.due += l.interval
	return media.Sample{Data: cur.data, Duration: l.interval}, due, nil
}

// ivfReader reads VP8 frames from an IVF file. (pion's ivfreader v4.2 scales frame timestamps
// by rate/scale rather than scale/rate, so the few bytes of header are read here.)
type ivfReader struct {
	r     io.Reader
	scale uint64 // a timestamp unit is scale/rate seconds
	rate  uint64
}

func newIVFReader(r io.Reader) (frameReader, error) {
	var h [32]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("IVF header: %w", err)
	}
	if string(h[:4]) != "DKIF" {
		return nil, errors.New("not an IVF file")
	}
	if fourcc := string(h[8:12]); fourcc != "VP80" {
		return nil, fmt.Errorf("IVF of %q: only VP8 (VP80) is published", fourcc)
	}
	v := &ivfReader{r: r, rate: uint64(binary.LittleEndian.Uint32(h[16:20])), scale: uint64(binary.LittleEndian.Uint32(h[20:24]))}
	if v.rate == 0 || v.scale == 0 {
		return nil, errors.New("IVF header: zero time base")
	}
	if n := int(binary.LittleEndian.Uint16(h[6:8])); n > len(h) {
		if _, err := io.CopyN(io.Discard, r, int64(n-len(h))); err != nil {
			return nil, fmt.Errorf("IVF header: %w", err)
		}
	}
	return v, nil
}

func (v *ivfReader) next() (frame, error) {
	var h [12]byte
	if _, err := io.ReadFull(v.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("IVF frame header truncated")
		}
		return frame{}, err
	}
	size := binary.LittleEndian.Uint32(h[:4])
	if size == 0 || size > maxFrameBytes {
		return frame{}, fmt.Errorf("IVF frame of %d bytes", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(v.r, data); err != nil {
		return frame{}, fmt.Errorf("IVF frame truncated: %w", err)
	}
	pts := float64(binary.LittleEndian.Uint64(h[4:12])) * float64(v.scale) / float64(v.rate)
	return frame{data: data, pts: time.Duration(pts * float64(time.Second))}, nil
}

// h264Reader reads access units (all NAL units of one picture) from an Annex B stream.
type h264Reader struct {
	r    *h264reader.H264Reader
	held *h264reader.NAL // the first NAL unit of the next access unit
	n    int
}

func newH264Reader(r io.Reader) (frameReader, error) {
	hr, err := h264reader.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &h264Reader{r: hr}, nil
}

func (h *h264Reader) next() (frame, error) {
	var au []byte
	vcl := false
	add := func(n *h264reader.NAL) {
		au = append(au, 0, 0, 0, 1)
		au = append(au, n.Data...)
		vcl = vcl || isVCL(n.UnitType)
	}
	if h.held != nil {
		add(h.held)
		h.held = nil
	}
	for {
		n, err := h.r.NextNAL()
		if errors.Is(err, io.EOF) {
			if vcl {
				break
			}
			return frame{}, io.EOF // trailing parameter sets without a picture
		}
		if err != nil {
			return frame{}, err
		}
		if len(au)+len(n.Data) > maxFrameBytes {
			return frame{}, errors.New("H.264 access unit too large")
		}
		if vcl && startsAccessUnit(n) {
			h.held = n
			break
		}
		add(n)
	}
	f := frame{data: au, pts: time.Duration(h.n) * h264Interval}
	h.n++
	return f, nil
}

func isVCL(t h264reader.NalUnitType) bool {
	return t == h264reader.NalUnitTypeCodedSliceNonIdr || t == h264reader.NalUnitTypeCodedSliceIdr
}

// startsAccessUnit says whether a NAL unit after a picture's slices begins the next access
// unit (H.264 7.4.1.2.3): a slice with first_mb_in_slice 0 (its ue(v) is the single bit 1),
// or SEI, SPS, PPS or an access unit delimiter.
func startsAccessUnit(n *h264reader.NAL) bool {
	switch {
	case isVCL(n.UnitType):
		return len(n.Data) > 1 && n.Data[1]&0x80 != 0
	case n.UnitType >= h264reader.NalUnitTypeSEI && n.UnitType <= h264reader.NalUnitTypeAUD:
		return true
	}
	return false
}

// oggReader reads Opus packets from an Ogg file, one per page. The granule position at the
// end of each page gives the next packet's start (always at 48 kHz for Opus, RFC 7845).
// Files with several packets per page (ffmpeg's default) are refused: remux them with
// ffmpeg -page_duration 20000.
type oggReader struct {
	r       *oggreader.OggReader
	granule uint64
}

func newOggReader(r io.Reader) (frameReader, error) {
	o, _, err := oggreader.NewWith(r)
	if err != nil {
		return nil, err
	}
	return &oggReader{r: o}, nil
}

func (o *oggReader) next() (frame, error) {
	for {
		data, h, err := o.r.ParseNextPage()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("truncated Ogg page")
			}
			return frame{}, err
		}
		if _, header := h.HeaderType(data); header || len(data) == 0 {
			continue
		}
		if h.GranulePosition == ^uint64(0) || h.GranulePosition < o.granule {
			return frame{}, errors.New("an Opus packet spans Ogg pages, or granule positions go back")
		}
		start := o.granule
		o.granule = h.GranulePosition
		if n := opusSamples(data); n == 0 || h.GranulePosition-start > uint64(n) {
			return frame{}, fmt.Errorf("an Ogg page of %d samples holds more than one Opus packet", h.GranulePosition-start)
		}
		return frame{data: data, pts: time.Duration(start) * time.Second / 48000}, nil
	}
}

// opusSamples is the length of an Opus packet at 48 kHz from its TOC byte (RFC 6716 3.1),
// or 0 if it is malformed.
func opusSamples(packet []byte) int {
	if len(packet) == 0 {
		return 0
	}
	toc := packet[0]
	config := int(toc >> 3)
	var size int // samples per frame
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		size = []int{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		size = []int{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		size = []int{120, 240, 480, 960}[config%4]
	}
	frames := 1
	switch toc & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(packet) < 2 {
			return 0
		}
		frames = int(packet[1] & 0x3f)
	}
	return size * frames
}
