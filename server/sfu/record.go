package sfu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

const (
	recQueue   = 1024                   // packets waiting for the recorder goroutine
	recMaxLate = 300 * time.Millisecond // how long a gap is waited for before it is skipped
	recMaxHeld = 256                    // packets held behind a gap at most
)

var recBufs = sync.Pool{New: func() any { b := make([]byte, 1500); return &b }}

// recorder writes one published track to disk: Opus to Ogg, VP8 and VP9 to IVF, H.264 to
// Annex B. Packets are put back in order and video is written a whole frame at a time;
// after a lost packet, video waits for the next keyframe so the file stays decodable.
type recorder struct {
	p     *Peer
	ut    *upTrack
	path  string
	video bool
	w     interface {
		WriteRTP(*rtp.Packet) error
		Close() error
	}
	ch   chan *[]byte
	stop chan struct{}
	done chan struct{}
	once sync.Once

	// Owned by the recorder goroutine.
	next     uint16
	started  bool
	held     map[uint16]*rtp.Packet
	heldAt   time.Time
	frame    []*rtp.Packet
	needKey  bool
	writeErr error
	start    time.Time // when the first frame was written: the file's time 0

	// Audio: where the next packet is due on the RTP clock, and the last packet's TOC byte.
	audioDue  uint32
	audioTOC  byte
	audioNext bool
}

func newRecorder(p *Peer, ut *upTrack) (*recorder, error) {
	var ext string
	switch codecKindOf(ut.codec.MimeType) {
	case codecVP8, codecVP9:
		ext = ".ivf"
	case codecH264:
		ext = ".h264"
	default:
		if !strings.EqualFold(ut.codec.MimeType, webrtc.MimeTypeOpus) {
			return nil, fmt.Errorf("sfu: cannot record %s", ut.codec.MimeType)
		}
		ext = ".ogg"
	}
	dir := filepath.Join(p.s.cfg.RecordDir, strconv.FormatInt(p.roomID, 10))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	base := fileSafe(p.id) + "-" + fileSafe(ut.id)
	path := filepath.Join(dir, base+ext)
	for i := 2; ; i++ {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		path = filepath.Join(dir, fmt.Sprintf("%s-%d%s", base, i, ext))
	}
	r := &recorder{
		p:     p,
		ut:    ut,
		path:  path,
		video: ut.video(),
		ch:    make(chan *[]byte, recQueue),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		held:  map[uint16]*rtp.Packet{},
		// The file starts at a keyframe: pion's ivfwriter would drop what comes before one
		// anyway, and its first written frame must be the one start names.
		needKey: ut.video(),
	}
	var err error
	switch ext {
	case ".ivf":
		// The RTP clock as the time base (90 kHz, pts = RTP time since the first frame): by
		// default pion writes a 1/30 s time base over pts of milliseconds / 30, which other
		// readers play 10% slow and which rounds each frame's time to 30 ms.
		r.w, err = ivfwriter.New(path, ivfwriter.WithCodec(ut.codec.MimeType),
			ivfwriter.WithFrameRate(1, ut.codec.ClockRate), ivfwriter.WithDirectPTS())
	case ".h264":
		r.w, err = h264writer.New(path)
	case ".ogg":
		ch := ut.codec.Channels
		if ch == 0 {
			ch = 2
		}
		r.w, err = oggwriter.New(path, ut.codec.ClockRate, ch)
	}
	if err != nil {
		return nil, err
	}
	go r.run()
	return r, nil
}

// fileSafe keeps a client-chosen ID from escaping the recording directory.
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// push hands a packet to the recorder without waiting: if the disk falls behind, packets are
// dropped (and the video waits for a keyframe) rather than stalling forwarding.
func (r *recorder) push(p *rtp.Packet) {
	bp := recBufs.Get().(*[]byte)
	n, err := p.MarshalTo(*bp)
	if err != nil {
		recBufs.Put(bp)
		return
	}
	*bp = (*bp)[:n]
	select {
	case r.ch <- bp:
	default:
		*bp = (*bp)[:cap(*bp)]
		recBufs.Put(bp)
	}
}

// close finalizes the file (synced to disk) and reports it; it waits for the writer.
func (r *recorder) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *recorder) run() {
	defer close(r.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case bp := <-r.ch:
			r.take(bp)
		case <-tick.C:
			r.release(time.Now(), false)
		case <-r.stop:
		drain:
			for {
				select {
				case bp := <-r.ch:
					r.take(bp)
				default:
					break drain
				}
			}
			r.release(time.Now(), true)
			r.finish()
			return
		}
	}
}

func (r *recorder) take(bp *[]byte) {
	p := &rtp.Packet{}
	err := p.Unmarshal(append([]byte(nil), *bp...))
	*bp = (*bp)[:cap(*bp)]
	recBufs.Put(bp)
	if err != nil || len(p.Payload) == 0 {
		return
	}
	if dist := int16(p.SequenceNumber - r.next); r.started && (dist > 1000 || dist < -1000) {
		// The stream restarted (a new SSRC or sequence base): finish what is held, start over.
		r.release(time.Now(), true)
		r.started, r.audioNext = false, false
		r.packet(p, true)
		r.started, r.next = true, p.SequenceNumber+1
		return
	}
	if !r.started {
		r.started, r.next = true, p.SequenceNumber
	}
	if seqNewer(r.next, p.SequenceNumber) {
		return // older than what was written: late or duplicate
	}
	if len(r.held) == 0 {
		r.heldAt = time.Now()
	}
	r.held[p.SequenceNumber] = p
	r.release(time.Now(), false)
}

// release writes held packets in sequence; a gap is skipped once it is recMaxLate old or too
// many packets wait behind it (all of it when flushing).
func (r *recorder) release(now time.Time, flush bool) {
	gap := false
	for len(r.held) > 0 {
		if p, ok := r.held[r.next]; ok {
			delete(r.held, r.next)
			r.next++
			r.packet(p, gap)
			gap = false
			r.heldAt = now
			continue
		}
		if !flush && now.Sub(r.heldAt) < recMaxLate && len(r.held) < recMaxHeld {
			return
		}
		// Skip to the oldest packet held.
		var oldest uint16
		first := true
		for s := range r.held {
			if first || seqNewer(oldest, s) {
				oldest, first = s, false
			}
		}
		r.next = oldest
		gap = true
	}
}

// packet takes packets in order; gap says some were lost before this one.
func (r *recorder) packet(p *rtp.Packet, gap bool) {
	if !r.video {
		r.fillAudio(p)
		r.write(p)
		return
	}
	if gap {
		r.frame = r.frame[:0]
		r.needKey = true
		r.ut.requestKeyframe(r.ut.recLayer)
	}
	if len(r.frame) > 0 && r.frame[0].Timestamp != p.Timestamp {
		r.writeFrame() // the publisher left the marker off the last packet
	}
	r.frame = append(r.frame, p)
	if p.Marker {
		r.writeFrame()
	}
}

func (r *recorder) writeFrame() {
	if len(r.frame) == 0 {
		return
	}
	if r.needKey {
		if !isKeyframeStart(r.ut.ck, r.frame[0].Payload) {
			r.frame = r.frame[:0]
			r.ut.requestKeyframe(r.ut.recLayer) // at most one a PLI interval
			return
		}
		r.needKey = false
	}
	for _, p := range r.frame {
		r.write(p)
	}
	r.frame = r.frame[:0]
}

func (r *recorder) write(p *rtp.Packet) {
	if r.writeErr != nil {
		return
	}
	if err := r.w.WriteRTP(p); err != nil {
		r.writeErr = err
		r.p.log.Warn("recording", "file", r.path, "err", err)
		return
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
}

// maxAudioFill bounds the silence written for one gap (48 kHz samples): a longer jump of the
// RTP clock is taken for a restarted stream rather than a pause.
const maxAudioFill = 10 * 60 * 48000

// fillAudio keeps the Ogg file on the RTP clock. pion's oggwriter times a file by counting
// its packets' samples, so packets lost, or not sent while a publisher paused, would pull
// everything after them earlier than the video. Each missing stretch is written as packets of
// a TOC byte alone (a frame of 0 bytes, RFC 6716 3.2.1), which decoders conceal as silence.
func (r *recorder) fillAudio(p *rtp.Packet) {
	toc := p.Payload[0]
	if r.audioNext {
		gap := p.Timestamp - r.audioDue
		frame := opusFrameSamples(r.audioTOC)
		if gap < maxAudioFill && frame > 0 {
			filler := &rtp.Packet{Header: p.Header, Payload: []byte{r.audioTOC &^ 3}}
			for ; gap >= frame; gap -= frame {
				filler.Timestamp = p.Timestamp - gap
				r.write(filler)
			}
		}
	}
	r.audioTOC, r.audioDue, r.audioNext = toc, p.Timestamp+opusPacketSamples(p.Payload), true
}

// opusFrameSamples is the duration of one frame of an Opus packet's configuration in 48 kHz
// samples (RFC 6716 3.1, Table 2).
func opusFrameSamples(toc byte) uint32 {
	c := toc >> 3
	switch {
	case c < 12: // SILK: 10, 20, 40, 60 ms
		return [4]uint32{480, 960, 1920, 2880}[c%4]
	case c < 16: // hybrid: 10, 20 ms
		return [2]uint32{480, 960}[c%2]
	}
	return [4]uint32{120, 240, 480, 960}[c%4] // CELT: 2.5, 5, 10, 20 ms
}

// opusPacketSamples is an Opus packet's duration in 48 kHz samples (RFC 6716 3.2).
func opusPacketSamples(payload []byte) uint32 {
	n := uint32(1)
	switch payload[0] & 3 {
	case 1, 2:
		n = 2
	case 3:
		if len(payload) < 2 {
			return 0
		}
		n = uint32(payload[1] & 0x3f)
	}
	return n * opusFrameSamples(payload[0])
}

func (r *recorder) finish() {
	r.writeFrame()
	err := r.w.Close()
	if err == nil {
		err = syncFile(r.path)
	}
	if err != nil {
		r.p.log.Warn("recording", "file", r.path, "err", err)
	}
	var size int64
	if fi, err := os.Stat(r.path); err == nil {
		size = fi.Size()
	}
	r.p.s.emit(Event{
		Room: r.p.roomID, Peer: r.p.id, Kind: EventRecording, File: r.path, Start: r.start,
		Detail: fmt.Sprintf("%s %s %d bytes", r.ut.kind, mimeName(r.ut.codec.MimeType), size),
	})
}

// syncFile flushes a closed file and its directory entry to disk: the pion writers close
// their files without fsync.
func syncFile(path string) error {
	for _, name := range []string{path, filepath.Dir(path)} {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
