package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/consult"
)

// TestWHIPIngestAndRecording: a station pushes its ultrasound feed by WHIP (RFC 9725) with its
// token into a consultation whose patient agreed to recording; the doctor in the room receives
// it; the recording is on disk and in the session log when the feed stops.
func TestWHIPIngestAndRecording(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clinic, doctor := f.users["clinic"], f.users["doctor"]
	c, err := f.app.consult.Create(ctx, clinic.p, consult.Request{Patient: consult.Patient{ID: "P7", Name: "蓝秀英", Sex: "F"},
		StudyUIDs: []string{f.studyA.Study}, ClinicalQuestion: "胎儿发育评估", Purpose: "超声会诊", Urgency: "routine",
		TargetInstitutionID: f.inst["H"], ConsentConfirmed: true, RecordingConsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Accept(ctx, doctor.p, c.ID, doctor.p.UserID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Start(ctx, doctor.p, c.ID); err != nil {
		t.Fatal(err)
	}
	viewer := f.join(ctx, t, doctor, c.ID, false)
	_, token, err := f.app.auth.CreateToken(ctx, "B超工作站", f.inst["A"], "clinic", "admin")
	if err != nil {
		t.Fatal(err)
	}

	// The encoder: a pion peer with one VP8 track, a complete (non-trickle) offer.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "ultrasound", "station")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	whip := fmt.Sprintf("%s/api/consultations/%d/whip", f.srv.URL, c.ID)
	post := func(auth, ct, body string) *http.Response {
		req, _ := http.NewRequest("POST", whip, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, bad := range []struct {
		auth, ct string
		want     int
	}{{"", "application/sdp", 401}, {token, "application/json", 415}} {
		res := post(bad.auth, bad.ct, pc.LocalDescription().SDP)
		res.Body.Close()
		if res.StatusCode != bad.want {
			t.Errorf("WHIP with a token %v, %s: %d, want %d", bad.auth != "", bad.ct, res.StatusCode, bad.want)
		}
	}
	res := post(token, "application/sdp", pc.LocalDescription().SDP)
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	location := res.Header.Get("Location")
	if res.StatusCode != http.StatusCreated || res.Header.Get("Content-Type") != "application/sdp" || location == "" {
		t.Fatalf("WHIP POST: %d %q %s", res.StatusCode, location, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	participant := location[strings.LastIndex(location, "/")+1:]
	go func() {
		for ctx.Err() == nil && pc.ConnectionState() != webrtc.PeerConnectionStateClosed {
			fh, err := os.Open(testVideo)
			if err != nil {
				return
			}
			r, _, err := ivfreader.NewWith(fh)
			for err == nil && ctx.Err() == nil {
				var frame []byte
				if frame, _, err = r.ParseNextFrame(); err == nil {
					track.WriteSample(media.Sample{Data: frame, Duration: time.Second / 15})
					time.Sleep(time.Second / 15)
				}
			}
			fh.Close()
			if !errors.Is(err, io.EOF) {
				return
			}
		}
	}()
	if err := viewer.WaitFrames(ctx, participant, 20); err != nil {
		t.Fatalf("the doctor did not receive the WHIP feed: %v (%+v)", err, viewer.Stats())
	}
	// Stop the feed: DELETE the session (with the same token).
	req, _ := http.NewRequest("DELETE", f.srv.URL+location, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("WHIP DELETE: %d", res.StatusCode)
	}
	// The recording is on disk and in the session log.
	dir := filepath.Join(f.st.Dir(), "recordings")
	waitUntil(t, 30*time.Second, "the recording on disk and in the session log", func() bool {
		var ivf []string
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.HasSuffix(p, ".ivf") && fi.Size() > 10000 {
				ivf = append(ivf, p)
			}
			return nil
		})
		entries, _ := f.app.trail.List(ctx, audit.Filter{ObjectPrefix: fmt.Sprintf("consultation:%d", c.ID), Action: "live.recording"})
		return len(ivf) > 0 && len(entries) > 0
	})
	// The session log lists it as recorded, and its page names the files.
	var page struct {
		Recordings []struct{ Participant, File string }
	}
	if code, body := f.json(f.users["admin"], "GET", fmt.Sprintf("/api/session-logs/%d", c.ID), nil, &page); code != 200 ||
		len(page.Recordings) == 0 || page.Recordings[0].Participant != participant || !strings.HasSuffix(page.Recordings[0].File, ".ivf") {
		t.Errorf("session log recordings: %d %+v %s", code, page.Recordings, body)
	}
	var rows []struct {
		ConsultationID int64 `json:"consultationId"`
		HasRecording   bool  `json:"hasRecording"`
	}
	f.json(f.users["admin"], "GET", "/api/session-logs?patient=P7", nil, &rows)
	if len(rows) != 1 || rows[0].ConsultationID != c.ID || !rows[0].HasRecording {
		t.Errorf("session log list: %+v", rows)
	}
}
