package live

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/sanping/sanping/protocol"
)

// TestViewStateFixture replays the ops a real room broadcast (recorded by server/room's
// TestViewStateFixture) and must reach the view the room ended in; the browser's reducer is
// held to the same file (web/src/live/viewstate.test.ts).
func TestViewStateFixture(t *testing.T) {
	b, err := os.ReadFile("../../protocol/testdata/viewstate-ops.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx []struct {
		Name    string               `json:"name"`
		Applied []protocol.OpApplied `json:"applied"`
		State   protocol.ViewState   `json:"state"`
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx) == 0 {
		t.Fatal("no recorded sessions")
	}
	for _, c := range fx {
		t.Run(c.Name, func(t *testing.T) {
			s := protocol.DefaultViewState()
			for _, a := range c.Applied {
				ApplyOp(&s, a)
			}
			got, _ := json.Marshal(s)
			want, _ := json.Marshal(c.State)
			if string(got) != string(want) {
				t.Errorf("replayed view\n%s\nthe room's\n%s", got, want)
			}
		})
	}
}
