package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
)

type pageRecording struct {
	ID          int       `json:"id"`
	Time        time.Time `json:"time"`
	Start       time.Time `json:"start"`
	Participant string    `json:"participant"`
	File        string    `json:"file"`
	Kind        string    `json:"kind"`
	Codec       string    `json:"codec"`
	Playable    bool      `json:"playable"`
	URL         string    `json:"url"`
	AudioID     *int      `json:"audioId"`
}

// TestSessionRecordingPlayback: in a consultation with recording consent a clinic publishes
// camera and microphone and a doctor H.264, then both leave; the admin's session page lists the
// three tracks, the clinic's video paired with its audio; the video's URL serves a WebM with
// both (ranges too), the audio's its Ogg, the H.264's a download; only the admin may fetch them,
// and each fetch is in the audit trail naming the patient.
func TestSessionRecordingPlayback(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin, clinicU, doctorU := f.users["admin"], f.users["clinic"], f.users["doctor"]
	c, err := f.app.consult.Create(ctx, clinicU.p, consult.Request{Patient: consult.Patient{ID: "P9", Name: "石桂兰", Sex: "F"},
		StudyUIDs: []string{f.studyA.Study}, ClinicalQuestion: "咳嗽两周", Purpose: "远程会诊", Urgency: "routine",
		TargetInstitutionID: f.inst["H"], ConsentConfirmed: true, RecordingConsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Accept(ctx, doctorU.p, c.ID, doctorU.p.UserID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Start(ctx, doctorU.p, c.ID); err != nil {
		t.Fatal(err)
	}
	// The doctor sends H.264 (a download, not playable), the clinic VP8 and Opus.
	doctor, err := live.Join(ctx, live.Config{URL: f.liveURL(c.ID), Header: f.header(doctorU), Name: doctorU.name,
		Video: "../client/live/testdata/video.h264"})
	if err != nil {
		t.Fatal(err)
	}
	defer doctor.Close()
	clinic := f.join(ctx, t, clinicU, c.ID, true)
	if err := doctor.WaitFrames(ctx, clinic.ID(), 30); err != nil {
		t.Fatalf("the doctor did not receive the clinic's camera: %v", err)
	}
	if err := clinic.WaitFrames(ctx, doctor.ID(), 30); err != nil {
		t.Fatalf("the clinic did not receive the doctor's camera: %v", err)
	}
	clinic.Close()
	doctor.Close()

	pagePath := fmt.Sprintf("/api/session-logs/%d", c.ID)
	var page struct {
		Recordings []pageRecording `json:"recordings"`
	}
	waitUntil(t, 30*time.Second, "the three tracks recorded", func() bool {
		f.json(admin, "GET", pagePath, nil, &page)
		return len(page.Recordings) >= 3
	})
	var video, audio, h264 *pageRecording
	for i := range page.Recordings {
		r := &page.Recordings[i]
		if r.ID != i || r.URL != fmt.Sprintf("%s/recordings/%d", pagePath, i) || r.Start.IsZero() {
			t.Errorf("recording %d: %+v", i, *r)
		}
		switch {
		case r.Participant == doctor.ID():
			h264 = r
		case r.Participant != clinic.ID():
			t.Errorf("recording %d from %s", i, r.Participant)
		case r.Kind == "video":
			video = r
		case r.Kind == "audio":
			audio = r
		}
	}
	if video == nil || audio == nil || h264 == nil {
		t.Fatalf("recordings %+v: want a video and an audio from the clinic, H.264 from the doctor", page.Recordings)
	}
	if h264.Kind != "video" || h264.Codec != "H264" || h264.Playable || h264.AudioID != nil {
		t.Errorf("H.264 entry %+v: want a video, not playable, without audio", *h264)
	}
	if res, body := f.get(admin, h264.URL); res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") || !bytes.HasPrefix(body, []byte{0, 0, 0, 1}) {
		t.Errorf("GET %s: %d %q %q", h264.URL, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"))
	}
	if video.Codec != "VP8" || !video.Playable || video.AudioID == nil || *video.AudioID != audio.ID {
		t.Errorf("video entry %+v: want VP8, playable, with audio %d", *video, audio.ID)
	}
	if audio.Codec != "opus" || !audio.Playable || audio.AudioID != nil {
		t.Errorf("audio entry %+v", *audio)
	}

	res, body := f.get(admin, video.URL)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "video/webm" || res.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET %s: %d %q %q", video.URL, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Accept-Ranges"))
	}
	var m struct {
		Header  webm.EBMLHeader `ebml:"EBML"`
		Segment webm.Segment    `ebml:"Segment"`
	}
	if err := ebml.Unmarshal(bytes.NewReader(body), &m); err != nil {
		t.Fatalf("the WebM does not parse: %v", err)
	}
	var codecs []string
	blocks := map[uint64]int{}
	first := map[uint64]int64{}
	for _, cl := range m.Segment.Cluster {
		for _, b := range cl.SimpleBlock {
			if blocks[b.TrackNumber] == 0 {
				first[b.TrackNumber] = int64(cl.Timecode) + int64(b.Timecode)
			}
			blocks[b.TrackNumber]++
		}
	}
	// The tracks are placed by their files' starts.
	if got, want := first[2]-first[1], audio.Start.Sub(video.Start).Milliseconds(); got < want-1 || got > want+1 {
		t.Errorf("the audio's first block is %d ms after the video's, its file started %d ms after", got, want)
	}
	for _, te := range m.Segment.Tracks.TrackEntry {
		codecs = append(codecs, te.CodecID)
		if blocks[te.TrackNumber] == 0 {
			t.Errorf("no blocks on the %s track", te.CodecID)
		}
	}
	if m.Header.DocType != "webm" || strings.Join(codecs, ",") != "V_VP8,A_OPUS" {
		t.Errorf("WebM %q with tracks %v, want V_VP8 and A_OPUS", m.Header.DocType, codecs)
	}

	// A player's range request, then the audio alone as Ogg.
	req, _ := http.NewRequest("GET", f.srv.URL+video.URL, nil)
	req.Header.Set("Range", "bytes=100-199")
	rres, err := admin.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rres.Body.Close()
	if rres.StatusCode != http.StatusPartialContent || rres.ContentLength != 100 {
		t.Errorf("range request: %d, %d bytes", rres.StatusCode, rres.ContentLength)
	}
	if res, body := f.get(admin, audio.URL); res.StatusCode != 200 || res.Header.Get("Content-Type") != "audio/ogg" || !bytes.HasPrefix(body, []byte("OggS")) {
		t.Errorf("GET %s: %d %q", audio.URL, res.StatusCode, res.Header.Get("Content-Type"))
	}

	for _, tc := range []struct {
		u    *fixtureUser
		path string
		want int
	}{
		{doctorU, video.URL, 403},
		{clinicU, video.URL, 403},
		{admin, fmt.Sprintf("%s/recordings/%d", pagePath, len(page.Recordings)), 404},
		{admin, pagePath + "/recordings/-1", 404},
		{admin, pagePath + "/recordings/first", 400},
		{admin, "/api/session-logs/999999/recordings/0", 404},
	} {
		if res, body := f.get(tc.u, tc.path); res.StatusCode != tc.want {
			t.Errorf("%s GET %s: %d, want %d (%s)", tc.u.name, tc.path, res.StatusCode, tc.want, body)
		}
	}

	entries, err := f.app.trail.List(ctx, audit.Filter{Action: "recording.read"})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, e := range entries {
		if e.Actor == "admin" && e.Role == auth.RoleAdmin && e.PatientID == "P9" {
			read[e.Object] = true
		}
	}
	for _, r := range []*pageRecording{video, audio, h264} {
		if obj := fmt.Sprintf("consultation:%d/recording/%d", c.ID, r.ID); !read[obj] {
			t.Errorf("no recording.read of %s in the trail (%v)", obj, read)
		}
	}
}
