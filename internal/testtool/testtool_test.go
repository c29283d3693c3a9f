package testtool

import (
	"testing"
)

// fakeTB records what a helper did to a test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

// TestNeedFailsInCI: a missing tool skips on a developer's machine and fails under CI.
func TestNeedFailsInCI(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		Need(f, "apt-get install nothing", "sanping-no-such-tool")
		if f.failed != (ci != "") || f.skipped != (ci == "") {
			t.Errorf("CI=%q: failed %v skipped %v", ci, f.failed, f.skipped)
		}
		f = &fakeTB{TB: t}
		if Want(f, "apt-get install nothing", "/no/such/tool") || f.failed != (ci != "") {
			t.Errorf("CI=%q: Want failed %v", ci, f.failed)
		}
	}
	f := &fakeTB{TB: t}
	Need(f, "", "sh")
	if f.failed || f.skipped {
		t.Error("a tool that is there was not found")
	}
}
