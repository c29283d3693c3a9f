package signal

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/room"
	"github.com/sanping/sanping/server/sfu"
)

// WHIP (RFC 9725) ingest: a station pushes its ultrasound feed from OBS Studio or GStreamer
// with its token. POST the SDP offer, get 201 with the answer and the session's URL; DELETE
// that URL to stop. The publisher is a participant of the room without a websocket.

const maxOfferBytes = 64 << 10

func whipOptions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.Header().Set("Allow", "OPTIONS, POST")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) whipPost(w http.ResponseWriter, r *http.Request) {
	c, ok := s.liveConsultation(w, r)
	if !ok {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/sdp" {
		auth.WriteProblem(w, http.StatusUnsupportedMediaType, "WHIP takes an SDP offer (Content-Type: application/sdp)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOfferBytes))
	if err != nil {
		auth.WriteProblem(w, http.StatusRequestEntityTooLarge, "the offer is larger than 64 KiB")
		return
	}
	offer := string(body)
	if !strings.HasPrefix(offer, "v=0") {
		auth.WriteProblem(w, http.StatusBadRequest, "the body is not an SDP offer")
		return
	}
	p, _ := auth.FromContext(r.Context())
	in := info(p, c, r)
	in.Client = "WHIP " + truncate(r.UserAgent(), 100)
	in.DefaultDriver, in.CanTake = false, false
	member, _, err := s.openRoom(r.Context(), c).Join(r.Context(), in, "")
	if err != nil {
		auth.WriteProblem(w, http.StatusServiceUnavailable, "cannot join the room: "+err.Error())
		return
	}
	// The member has no websocket: its room messages are read and dropped.
	go func() {
		for range member.Outbox() {
		}
	}()
	answer, peer, err := s.sfu.WHIP(r.Context(), c.ID, member.ID(), offer, sfu.PeerOptions{Record: c.RecordingConsent})
	if err != nil {
		member.Leave()
		auth.WriteProblem(w, http.StatusBadRequest, "the offer was refused: "+err.Error())
		return
	}
	key := sessionKey{c.ID, member.ID()}
	s.mu.Lock()
	s.sessions[key] = &session{key: key, info: in, member: member, peer: peer}
	s.mu.Unlock()
	s.Event(room.Event{Consultation: c.ID, Participant: member.ID(), Username: in.Username, Action: "live.whip", Detail: "ingest started"})
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", fmt.Sprintf("/api/consultations/%d/whip/%s", c.ID, member.ID()))
	w.Header().Set("ETag", `"`+randomTag()+`"`)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

func (s *Service) whipDelete(w http.ResponseWriter, r *http.Request) {
	var id int64
	fmt.Sscan(r.PathValue("id"), &id)
	se := s.session(id, r.PathValue("peer"))
	p, _ := auth.FromContext(r.Context())
	// Only whoever started the ingest (or an admin) ends it.
	if se == nil || se.member == nil || !strings.HasPrefix(se.info.Client, "WHIP") || (se.info.Username != p.Username && !p.HasRole(auth.RoleAdmin)) {
		auth.WriteProblem(w, http.StatusNotFound, "no such WHIP session")
		return
	}
	se.member.Leave()
	w.WriteHeader(http.StatusOK)
}

func randomTag() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
