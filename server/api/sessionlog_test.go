package api

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/signal"
)

func TestSessionEvents(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	entries := []audit.Entry{
		{Seq: 1, Action: "consultation.start", Actor: "doctor"},
		{Seq: 2, Action: "live.join", Actor: "doctor", Detail: "p-1: doctor, sanping-web/1 Chromium 120, 10.0.0.7, Mozilla/5.0 (X11, Linux)"},
		{Seq: 3, Action: "live.connection", Actor: "doctor", Detail: "p-1: relay"},
		{Seq: 4, Action: "live.muted", Actor: "doctor", Detail: "p-1: microphone"},
		{Seq: 5, Action: "live.disconnect", Actor: "doctor", Detail: "p-1: "},
		{Seq: 6, Action: "live.resume", Actor: "doctor", Detail: "p-1: doctor, sanping-web/1, 10.0.0.8, UA"},
		{Seq: 7, Action: "live.connection", Actor: "doctor", Detail: "p-1: tcp"},
		{Seq: 8, Action: "report.sign", Actor: "doctor"},
		{Seq: 9, Action: "study.read", Actor: "clinic"},
		{Seq: 10, Action: "live.track.publish", Actor: "doctor", Detail: "p-1: camera"},
	}
	for i := range entries {
		entries[i].Time = at.Add(time.Duration(i) * time.Second)
	}
	got := sessionEvents(entries)
	want := []struct{ typ, participant, connection, ip, ua, detail string }{
		{"consultation", "", "", "", "", ""},
		{"join", "p-1", "relay", "10.0.0.7", "Mozilla/5.0 (X11, Linux)", "sanping-web/1 Chromium 120"},
		{"connection", "p-1", "relay", "", "", "relay"},
		{"muted", "p-1", "", "", "", "microphone"},
		{"disconnect", "p-1", "", "", "", ""},
		{"resume", "p-1", "tcp", "10.0.0.8", "UA", "sanping-web/1"},
		{"connection", "p-1", "tcp", "", "", "tcp"},
		{"report", "", "", "", "", ""},
		{"read", "", "", "", "", ""},
		{"track", "p-1", "", "", "", "camera"},
	}
	for i, w := range want {
		e := got[i]
		if e.Type != w.typ || e.Participant != w.participant || e.Connection != w.connection || e.IP != w.ip || e.UserAgent != w.ua || e.Detail != w.detail {
			t.Errorf("%s: %+v, want %+v", entries[i].Action, e, w)
		}
	}
	if got[1].Role != "doctor" {
		t.Errorf("join role %q", got[1].Role)
	}
}

// Two hours of five participants, a sample each 5 s: the columns stay compact.
func TestQualityColumnsSize(t *testing.T) {
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var samples []signal.QualitySample
	for i := range 1440 {
		for p := range 5 {
			samples = append(samples, signal.QualitySample{Time: start.Add(time.Duration(i) * 5 * time.Second), Participant: fmt.Sprint("p-", p),
				Username: fmt.Sprint("user", p), Source: "client",
				Quality: protocol.Quality{BitrateIn: 812_345, BitrateOut: 1_234_567, Loss: 0.0123, RTTms: 87, JitterMs: 12.5, FPS: 24, Width: 1280, Height: 720}})
		}
	}
	events := []sessionEvent{{Type: "resume", Participant: "p-3", Actor: "user3", Time: start.Add(time.Hour)}}
	cols := qualityColumns(samples, events)
	if len(cols) != 5 || len(cols[0].T) != 1440 || len(cols[3].Resumes) != 1 || cols[3].Resumes[0] != start.Add(time.Hour).UnixMilli() {
		t.Fatalf("columns: %d series, %d samples", len(cols), len(cols[0].T))
	}
	b, _ := json.Marshal(cols)
	flat, _ := json.Marshal(samples)
	t.Logf("7,200 samples: %d bytes as columns, %d as objects", len(b), len(flat))
	if len(b) > 700_000 || len(b)*3 > len(flat) {
		t.Errorf("columns take %d bytes (objects %d)", len(b), len(flat))
	}
}
