package room

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
)

var update = flag.Bool("update", false, "rewrite protocol/testdata/viewstate-ops.json from the room")

const fixturePath = "../../protocol/testdata/viewstate-ops.json"

// viewFixture is one recorded session: the ops participants sent, in order, what the room
// broadcast (participant IDs replaced by their names) and the view it ended with. The Go
// participant (client/live) and the browser (web/src/live/viewstate.ts) replay Applied on
// a default view and must reach State: the three reducers cannot drift.
type viewFixture struct {
	Name    string               `json:"name"`
	Inputs  []fixtureInput       `json:"inputs"`
	Applied []protocol.OpApplied `json:"applied"`
	State   protocol.ViewState   `json:"state"`
}

type fixtureInput struct {
	Who string      `json:"who"` // doctor (the driver), clinic or township
	Op  protocol.Op `json:"op"`
}

func readViewFixtures(t *testing.T) []viewFixture {
	t.Helper()
	b, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	var fx []viewFixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("parsing %s: %v", fixturePath, err)
	}
	return fx
}

// TestViewStateFixture plays each fixture's inputs into a real room and checks that the room
// broadcasts the recorded ops and ends in the recorded state; the room's own apply, replaying
// the recorded ops on a default view, must reach that state too.
func TestViewStateFixture(t *testing.T) {
	fx := readViewFixtures(t)
	for i, c := range fx {
		t.Run(c.Name, func(t *testing.T) {
			clk := newClock()
			f := newFixture(t, Config{Now: clk.Now, OpsPerSecond: 10000})
			members := map[string]*Member{}
			for _, in := range []Info{doctor, clinic, township} {
				mb, _ := f.join(in)
				members[in.Username] = mb
			}
			names := map[string]string{"wang": "doctor", "li": "clinic", "zhao": "township"}
			rename := strings.NewReplacer(
				members["wang"].ID(), names["wang"], members["li"].ID(), names["li"], members["zhao"].ID(), names["zhao"])
			for _, mb := range members {
				queued(t, mb)
			}
			byName := map[string]*Member{"doctor": members["wang"], "clinic": members["li"], "township": members["zhao"]}
			var applied []protocol.OpApplied
			for j, in := range c.Inputs {
				clk.Add(time.Second) // no pointer waits for pacing
				mb := byName[in.Who]
				if mb == nil {
					t.Fatalf("input %d: unknown participant %q", j, in.Who)
				}
				if err := mb.Handle(opMsg(uint64(j+1), in.Op)); err != nil {
					t.Fatalf("input %d (%s %s): %v", j, in.Who, in.Op.Kind, err)
				}
				for _, m := range ofType(queued(t, byName["township"]), protocol.TypeOpApplied) {
					var oa protocol.OpApplied
					if err := json.Unmarshal([]byte(rename.Replace(string(m.Data))), &oa); err != nil {
						t.Fatal(err)
					}
					applied = append(applied, oa)
				}
			}
			var state protocol.ViewState
			if err := json.Unmarshal([]byte(rename.Replace(jsonOf(t, f.r.Snapshot().State))), &state); err != nil {
				t.Fatal(err)
			}
			if *update {
				fx[i].Applied, fx[i].State = applied, state
				return
			}
			if got, want := jsonOf(t, applied), jsonOf(t, c.Applied); got != want {
				t.Errorf("the room broadcast\n%s\nthe fixture has\n%s", got, want)
			}
			if got, want := jsonOf(t, state), jsonOf(t, c.State); got != want {
				t.Errorf("the room ended in\n%s\nthe fixture has\n%s", got, want)
			}
			replayed := protocol.DefaultViewState()
			for _, a := range c.Applied {
				apply(&replayed, &a.Op)
			}
			if got, want := jsonOf(t, replayed), jsonOf(t, c.State); got != want {
				t.Errorf("apply over the recorded ops gives\n%s\nthe fixture has\n%s", got, want)
			}
		})
	}
	if *update {
		b, err := json.MarshalIndent(fx, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fixturePath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
