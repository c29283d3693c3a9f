// Package recording turns the SFU's recorded tracks into files a browser plays: a VP8 or VP9
// track (IVF) with the same participant's Opus (Ogg) becomes one WebM, aligned by the wall-clock
// times the two files start.
package recording

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Info is what the session log says of a recorded file.
type Info struct {
	Kind     string // audio or video
	Codec    string // VP8, VP9, H264 or opus
	Playable bool   // a browser plays what the server serves for it
}

// Probe names a recording's kind and codec from its extension and, for IVF, its header. H.264
// (Annex B) is not playable: browsers take H.264 from MP4, not from WebM, so it is offered as a
// download.
func Probe(path string) Info {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ogg":
		return Info{Kind: "audio", Codec: "opus", Playable: true}
	case ".h264":
		return Info{Kind: "video", Codec: "H264"}
	case ".ivf":
		in := Info{Kind: "video"}
		f, err := os.Open(path)
		if err != nil {
			return in
		}
		defer f.Close()
		v, err := newIVFReader(f)
		if err != nil {
			return in
		}
		switch v.h.fourcc {
		case "VP80":
			in.Codec, in.Playable = "VP8", true
		case "VP90":
			in.Codec, in.Playable = "VP9", true
		default:
			in.Codec = strings.TrimRight(v.h.fourcc, "0 ")
		}
		return in
	}
	return Info{}
}

// Source is a recorded file, the wall-clock time of its first frame and the time it was
// finalized. Without a Start (files recorded before starts were kept) a track is placed by its
// End less its duration: the SFU finalizes a participant's tracks together when it leaves.
type Source struct {
	Path       string
	Start, End time.Time
}

func (s Source) start() time.Time {
	if !s.Start.IsZero() || s.End.IsZero() {
		return s.Start
	}
	d, err := Duration(s.Path)
	if err != nil {
		return time.Time{}
	}
	return s.End.Add(-d)
}

// Stats counts what WriteWebM wrote.
type Stats struct {
	VideoFrames, AudioPackets int
	// AudioOffset is how much later than the video the audio starts (negative: earlier).
	AudioOffset time.Duration
}

// Output is where a WebM goes: written in order, then its Cues and Duration written back into
// space reserved near the start.
type Output interface {
	io.Writer
	io.WriterAt
}

// cuesReserved bounds the seek index: a cue per cluster (a second or more, at most 5 s) of
// about 20 bytes covers 4 hours; a longer file's index is thinned by ebml-go.
const cuesReserved = 64 << 10

// WriteWebM writes video (an IVF file: VP8 or VP9) and audio (an Ogg Opus file) as one WebM;
// either Path may be empty. Each track is placed on a common timeline by its Start, so the
// earlier file starts at 0 and the later one as much later as it began.
func WriteWebM(out Output, video, audio Source) (Stats, error) {
	var st Stats
	var tracks []webm.TrackEntry
	var v *ivfReader
	var a *oggSource
	var vframe []byte
	var vt time.Duration
	if video.Path != "" {
		f, err := os.Open(video.Path)
		if err != nil {
			return st, err
		}
		defer f.Close()
		if v, err = newIVFReader(f); err != nil {
			return st, fmt.Errorf("%s: %w", video.Path, err)
		}
		codec := map[string]string{"VP80": "V_VP8", "VP90": "V_VP9"}[v.h.fourcc]
		if codec == "" {
			return st, fmt.Errorf("recording: %s: cannot put %q in WebM", video.Path, v.h.fourcc)
		}
		// The first frame is read ahead for its size (pion's writer leaves the header at 640x480).
		if vframe, vt, err = v.next(); err != nil && !errors.Is(err, io.EOF) {
			return st, fmt.Errorf("%s: %w", video.Path, err)
		}
		w, h := v.h.width, v.h.height
		if fw, fh, ok := vp8Size(vframe); ok && v.h.fourcc == "VP80" {
			w, h = fw, fh
		}
		tracks = append(tracks, webm.TrackEntry{Name: "video", TrackNumber: 1, TrackUID: 1, CodecID: codec, TrackType: 1,
			Video: &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}})
	}
	if audio.Path != "" {
		f, err := os.Open(audio.Path)
		if err != nil {
			return st, err
		}
		defer f.Close()
		if a, err = newOggSource(f); err != nil {
			return st, fmt.Errorf("%s: %w", audio.Path, err)
		}
		n := uint64(len(tracks) + 1)
		tracks = append(tracks, webm.TrackEntry{Name: "audio", TrackNumber: n, TrackUID: n, CodecID: "A_OPUS", TrackType: 2,
			CodecPrivate: a.opusHead(), SeekPreRoll: uint64(80 * time.Millisecond),
			Audio: &webm.Audio{SamplingFrequency: 48000, Channels: uint64(a.head.Channels)}})
	}
	if len(tracks) == 0 {
		return st, errors.New("recording: nothing to write")
	}
	// The later source is shifted by the difference of the starts.
	var voff, aoff time.Duration
	if v != nil && a != nil {
		vs, as := video.Start, audio.Start
		if vs.IsZero() || as.IsZero() {
			vs, as = Source{Path: video.Path, End: video.End}.start(), Source{Path: audio.Path, End: audio.End}.start()
		}
		if !vs.IsZero() && !as.IsZero() {
			st.AudioOffset = as.Sub(vs)
		}
	}
	if st.AudioOffset > 0 {
		aoff = st.AudioOffset
	} else {
		voff = -st.AudioOffset
	}

	sink := &stickyOutput{out: out}
	opts := []mkvcore.BlockWriterOption{
		mkvcore.WithSegmentInfo(&webm.Info{TimecodeScale: uint64(time.Millisecond), MuxingApp: "sanping", WritingApp: "sanping"}),
		mkvcore.WithSeekHead(true), mkvcore.WithCues(cuesReserved),
		// Blocks are written in time order below; ebml-go's default sorter drops packets that
		// arrive more than 16 behind the other track's.
		mkvcore.WithBlockInterceptor(nil),
		mkvcore.WithOnFatalHandler(sink.fail),
		mkvcore.WithOnErrorHandler(sink.fail),
	}
	if v != nil {
		// A cluster (and a cue) starts at a keyframe a second on, or every 5 s regardless.
		opts = append(opts, mkvcore.WithMinMaxClusterDuration(1, 1000, 5000))
	}
	ws, err := webm.NewSimpleBlockWriter(sink, tracks, opts...)
	if err != nil {
		return st, err
	}
	closeAll := func() {
		for _, w := range ws {
			w.Close()
		}
	}
	var vw, aw webm.BlockWriteCloser
	if v != nil {
		vw = ws[0]
	}
	if a != nil {
		aw = ws[len(ws)-1]
	}

	var apkt []byte
	var at time.Duration
	var vlast, alast int64
	nextAudio := func() error {
		if a == nil {
			return io.EOF
		}
		var err error
		apkt, at, err = a.next()
		return err
	}
	verr := io.EOF
	if vframe != nil {
		verr = nil
	}
	aerr := nextAudio()
	for verr == nil || aerr == nil {
		if err := sink.error(); err != nil {
			closeAll()
			return st, err
		}
		if verr == nil && (aerr != nil || vt+voff <= at+aoff) {
			ms := max(int64((vt+voff)/time.Millisecond), vlast)
			vw.Write(keyframe(v.h.fourcc, vframe), ms, vframe)
			vlast = ms
			st.VideoFrames++
			vframe, vt, verr = v.next()
			continue
		}
		ms := max(int64((at+aoff)/time.Millisecond), alast)
		aw.Write(true, ms, apkt)
		alast = ms
		st.AudioPackets++
		aerr = nextAudio()
	}
	closeAll()
	for _, err := range []error{verr, aerr} {
		if !errors.Is(err, io.EOF) {
			return st, err
		}
	}
	return st, sink.error()
}

// stickyOutput keeps the first error of the output or of ebml-go and swallows what follows:
// ebml-go's writer goroutine stops at a failed write and would leave the track writers blocked.
type stickyOutput struct {
	out Output
	mu  sync.Mutex
	err error
}

func (s *stickyOutput) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *stickyOutput) error() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *stickyOutput) Write(p []byte) (int, error) {
	if s.error() == nil {
		if _, err := s.out.Write(p); err != nil {
			s.fail(err)
		}
	}
	return len(p), nil
}

func (s *stickyOutput) WriteAt(p []byte, off int64) (int, error) {
	if s.error() == nil {
		if _, err := s.out.WriteAt(p, off); err != nil {
			s.fail(err)
		}
	}
	return len(p), nil
}

// Close is the caller's: the file is synced and closed by whoever opened it.
func (s *stickyOutput) Close() error { return nil }

// oggSource reads Opus packets from an Ogg file through pion's oggreader, which returns a
// page's payload whole: pion's oggwriter (the SFU's) puts one packet on each page, so a page
// with a granule position is a packet, and one without (-1) continues on the next page.
type oggSource struct {
	r       *oggreader.OggReader
	head    *oggreader.OggHeader
	granule uint64
}

func newOggSource(r io.Reader) (*oggSource, error) {
	or, head, err := oggreader.NewWith(r)
	if err != nil {
		return nil, err
	}
	if head.SampleRate == 0 {
		head.SampleRate = 48000
	}
	return &oggSource{r: or, head: head}, nil
}

// next returns the next Opus packet and its time from the file's start (the previous page's
// granule position: Opus granules count 48 kHz samples whatever the input rate, RFC 7845 4).
func (o *oggSource) next() ([]byte, time.Duration, error) {
	var pkt []byte
	for {
		payload, h, err := o.r.ParseNextPage()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return nil, 0, err
		}
		if t, ok := h.HeaderType(payload); ok && (t == oggreader.HeaderOpusTags || t == oggreader.HeaderOpusID) {
			continue
		}
		pkt = append(pkt, payload...)
		if h.GranulePosition == ^uint64(0) || len(pkt) == 0 {
			continue
		}
		t := time.Duration(o.granule) * time.Second / 48000
		o.granule = h.GranulePosition
		return pkt, t, nil
	}
}

// opusHead is the track's CodecPrivate (RFC 7845 5.1) with a pre-skip of 0: the recording's
// packets are what the call carried from the first one, which no receiver trimmed (pion's
// writer claims 3840 samples it never encoded), so the audio keeps its place against the video.
func (o *oggSource) opusHead() []byte {
	h := o.head
	b := make([]byte, 19, 21+len(h.ChannelMapping))
	copy(b, "OpusHead")
	b[8], b[9] = 1, h.Channels
	binary.LittleEndian.PutUint32(b[12:16], h.SampleRate)
	binary.LittleEndian.PutUint16(b[16:18], h.OutputGain)
	b[18] = h.ChannelMap
	if h.ChannelMap != 0 {
		b = append(b, h.StreamCount, h.CoupledCount)
		b = append(b, h.ChannelMapping...)
	}
	return b
}

// Duration is how long a recording plays: its last frame's time (IVF) or last granule (Ogg).
func Duration(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var next func() ([]byte, time.Duration, error)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ivf":
		v, err := newIVFReader(f)
		if err != nil {
			return 0, err
		}
		next = v.next
	case ".ogg":
		o, err := newOggSource(f)
		if err != nil {
			return 0, err
		}
		next = func() ([]byte, time.Duration, error) {
			p, _, err := o.next()
			return p, time.Duration(o.granule) * time.Second / 48000, err
		}
	default:
		return 0, fmt.Errorf("recording: no duration for %s", path)
	}
	var d time.Duration
	for {
		_, t, err := next()
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return d, err
		}
		d = t
	}
}
