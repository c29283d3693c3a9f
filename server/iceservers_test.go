package server

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/auth"
)

// TestICEServers: GET /api/ice-servers gives a signed-in user and a station token the TURN
// servers the room's welcome gives, with credentials valid an hour and issued to the caller
// by ID; without TURN it is an empty list.
func TestICEServers(t *testing.T) {
	f := newAuthzFixtureWith(t, Config{TURNAddr: "127.0.0.1:0", PublicIP: "127.0.0.1"})
	doctor := f.users["doctor"]

	var got struct {
		ICEServers []protocol.ICEServer `json:"iceServers"`
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/ice-servers", nil)
	res, err := doctor.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d Cache-Control %q: %s", res.StatusCode, res.Header.Get("Cache-Control"), body)
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.ICEServers) != 1 {
		t.Fatalf("answer %s (%v)", body, err)
	}
	turn := got.ICEServers[0]
	checkCredential(t, turn, "user-"+strconv.FormatInt(doctor.p.UserID, 10))
	if len(turn.URLs) != 2 || !strings.HasSuffix(turn.URLs[0], "?transport=udp") || !strings.HasSuffix(turn.URLs[1], "?transport=tcp") {
		t.Errorf("urls %q, want TURN on UDP and TCP", turn.URLs)
	}

	// The welcome of a live room names the same servers.
	id := f.consultation(false, "live")
	c := f.rawConn(t, doctor, id)
	hello, _ := protocol.Encode(protocol.TypeHello, 1, protocol.Hello{Protocol: protocol.Version})
	if err := c.WriteMessage(1, hello); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m protocol.Message
	if err := c.ReadJSON(&m); err != nil || m.Type != protocol.TypeWelcome {
		t.Fatalf("welcome: %v %+v", err, m)
	}
	var w protocol.Welcome
	json.Unmarshal(m.Data, &w)
	if len(w.ICEServers) != 1 || !slices.Equal(w.ICEServers[0].URLs, turn.URLs) {
		t.Errorf("welcome's ICE servers %+v, the endpoint's %+v", w.ICEServers, got.ICEServers)
	}

	// A station's token: issued to the token, not to a person.
	tok, secret, err := f.app.auth.CreateToken(f.ctx, "B超工作站", f.inst["A"], auth.RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest("GET", f.srv.URL+"/api/ice-servers", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if err := json.Unmarshal(body, &got); res.StatusCode != 200 || err != nil || len(got.ICEServers) != 1 {
		t.Fatalf("station: %d %s", res.StatusCode, body)
	}
	checkCredential(t, got.ICEServers[0], "token-"+strconv.FormatInt(tok.ID, 10))

	// Without TURN: an empty list, not null.
	plain := newAuthzFixture(t)
	if code, body := plain.do(plain.users["clinic"], "GET", "/api/ice-servers", "", nil, nil); code != 200 || strings.TrimSpace(body) != `{"iceServers":[]}` {
		t.Errorf("without TURN: %d %s", code, body)
	}
}

// checkCredential: a TURN REST username "<expiry>:<who>" expiring in an hour, and a password.
func checkCredential(t *testing.T, s protocol.ICEServer, who string) {
	t.Helper()
	m := regexp.MustCompile(`^(\d+):(.+)$`).FindStringSubmatch(s.Username)
	if m == nil || m[2] != who || s.Credential == "" {
		t.Fatalf("username %q credential %q, want one issued to %s", s.Username, s.Credential, who)
	}
	exp, _ := strconv.ParseInt(m[1], 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("credentials valid for %v, want an hour", d)
	}
}
