package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/recording"
	"github.com/sanping/sanping/server/signal"
)

// Recorded tracks on the session page and their playback. A VP8/VP9 track is served as WebM
// with the same participant's audio of the same span muxed in (remuxed once, cached beside the
// recording); audio alone is served as its Ogg file (audio/ogg: Chromium and Firefox play Ogg
// Opus, and nothing derived needs keeping); H.264 (Annex B) is a download, as no browser plays
// it outside MP4.

// recordingEntry is a recorded track on the session page.
type recordingEntry struct {
	// ID is the entry's index in the page's list, the n of its URL.
	ID int `json:"id"`
	signal.Recording
	Kind     string `json:"kind"`  // audio or video
	Codec    string `json:"codec"` // VP8, VP9, H264 or opus
	Playable bool   `json:"playable"`
	URL      string `json:"url"`
	// AudioID is the entry whose audio plays with this video, if any.
	AudioID *int `json:"audioId,omitempty"`
}

// pairEnds is how far apart the ends of a video and an audio track without recorded starts
// (recordings made before starts were kept) may be and still be taken as one camera and mic.
const pairEnds = 5 * time.Second

// recordingEntries describes a consultation's recordings and pairs each video with its
// participant's audio: the audio whose span overlaps the video's most, or, without starts, the
// one that ended nearest (both are finalized when the participant leaves).
func recordingEntries(consultation int64, recs []signal.Recording) []recordingEntry {
	out := make([]recordingEntry, len(recs))
	for i, rec := range recs {
		in := recording.Probe(rec.File)
		out[i] = recordingEntry{ID: i, Recording: rec, Kind: in.Kind, Codec: in.Codec, Playable: in.Playable,
			URL: fmt.Sprintf("/api/session-logs/%d/recordings/%d", consultation, i)}
	}
	for i := range out {
		v := &out[i]
		if v.Kind != "video" || !v.Playable {
			continue
		}
		best, bestScore := -1, time.Duration(0)
		for j, a := range out {
			if a.Kind != "audio" || a.Participant != v.Participant {
				continue
			}
			var score time.Duration
			if !v.Start.IsZero() && !a.Start.IsZero() {
				score = minTime(v.Time, a.Time).Sub(maxTime(v.Start, a.Start)) // the overlap
			} else {
				d := v.Time.Sub(a.Time).Abs()
				if d > pairEnds {
					continue
				}
				score = pairEnds - d
			}
			if score > bestScore {
				best, bestScore = j, score
			}
		}
		if best >= 0 {
			v.AudioID = &best
		}
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sessionRecording serves entry n of a session page's recordings: WebM for video, the Ogg for
// audio, the file as a download for what a browser cannot play. Every request (a player asks
// for ranges as it plays and seeks) is an audited read of the patient's data, coalesced per
// minute like image reads.
func (s *Service) sessionRecording(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "sid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		s.fail(w, r, errors.Join(errBadRequest, errors.New("the recording is a number from the session page's list")))
		return
	}
	c, err := s.cons.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var recs []signal.Recording
	if s.cfg.Live != nil {
		if recs, err = s.cfg.Live.Recordings(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	entries := recordingEntries(id, recs)
	if n < 0 || n >= len(entries) {
		s.fail(w, r, auth.ErrHidden)
		return
	}
	e := entries[n]
	video, ok := s.recordingFile(e.File)
	if !ok {
		s.fail(w, r, auth.ErrHidden)
		return
	}
	s.recordReadAbout(r, "recording.read", consultObject(id)+"/recording/"+strconv.Itoa(n), c.Patient)

	path, ctype := video, "application/octet-stream"
	switch {
	case e.Kind == "video" && e.Playable:
		src := recording.Source{Path: video, Start: e.Start, End: e.Time}
		var audio recording.Source
		if e.AudioID != nil {
			a := entries[*e.AudioID]
			if p, ok := s.recordingFile(a.File); ok {
				audio = recording.Source{Path: p, Start: a.Start, End: a.Time}
			}
		}
		if path, err = s.rec.WebM(src, audio); err != nil {
			s.fail(w, r, err)
			return
		}
		ctype = "video/webm"
	case e.Kind == "audio" && e.Playable:
		ctype = "audio/ogg"
	default:
		w.Header().Set("Content-Disposition", `attachment; filename="`+filepath.Base(video)+`"`)
	}
	f, err := os.Open(path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "private, no-cache")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// recordingFile is a recording's path if it lies in the recordings directory: the path comes
// from the database, which the SFU wrote, but nothing outside that directory is served.
func (s *Service) recordingFile(file string) (string, bool) {
	if s.cfg.RecordingDir == "" {
		return "", false
	}
	dir, err := filepath.EvalSymlinks(s.cfg.RecordingDir)
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return "", false
	}
	p, err := filepath.EvalSymlinks(file)
	if err == nil {
		p, err = filepath.Abs(p)
	}
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		s.log.Warn("recording outside the recordings directory refused", "file", file)
		return "", false
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return p, true
}

// recordReadAbout appends a coalesced read naming the patient.
func (s *Service) recordReadAbout(r *http.Request, action, object string, p consult.Patient) {
	if s.trail == nil {
		return
	}
	e := principal(r).AuditEntry(action, object, "success")
	name := func(context.Context) (string, string, error) { return p.ID, p.Name, nil }
	if _, err := s.trail.ReadAbout(context.WithoutCancel(r.Context()), e, name); err != nil {
		s.log.Error("audit trail: entry not written", "action", action, "object", object, "err", err)
	}
}
