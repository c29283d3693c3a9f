// Package testtool is how tests ask for the outside programs they check Sanping against
// (DCMTK, Orthanc, Chromium). On a developer's machine a missing tool skips the test, with the
// package to install; where the environment variable CI is set, it fails the test instead,
// so a CI run that lacks a tool cannot pass with the reference comparisons unrun.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need skips (or under CI fails) the test unless every tool is there: a name looked up in
// PATH, or a path. hint says how to install them, e.g. "apt-get install dcmtk".
func Need(tb testing.TB, hint string, tools ...string) {
	tb.Helper()
	for _, t := range tools {
		if !found(t) {
			missing(tb, t, hint)
		}
	}
}

// Want reports whether tool is there, for a cross-check a test can do without; under CI a
// missing tool fails the test.
func Want(tb testing.TB, hint, tool string) bool {
	tb.Helper()
	if found(tool) {
		return true
	}
	if InCI() {
		tb.Fatalf("%s is not installed (%s); CI must have it", tool, hint)
	}
	return false
}

// InCI reports whether the tests run in CI (the environment variable CI is set).
func InCI() bool { return os.Getenv("CI") != "" }

func found(tool string) bool {
	if len(tool) > 0 && tool[0] == '/' {
		_, err := os.Stat(tool)
		return err == nil
	}
	_, err := exec.LookPath(tool)
	return err == nil
}

func missing(tb testing.TB, tool, hint string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is not installed (%s); CI must have it", tool, hint)
		return
	}
	tb.Skipf("%s is not installed (%s)", tool, hint)
}

// DCMTK is how to install DCMTK's tools on Debian.
const DCMTK = "apt-get install dcmtk"

// MeasuresTime marks a test whose assertions are timings of real media (frames per second
// under loss, time to the first frame, layer switches within seconds). The race detector
// slows pion several times over and `go test ./...` runs packages side by side on the same
// two cores, so under -race such a test is skipped: `make test` runs these again without
// the race detector, one package at a time (test-timing), where the figures mean something.
// Their concurrency is still checked under -race by the other tests of their packages.
func MeasuresTime(tb testing.TB) {
	tb.Helper()
	if RaceEnabled {
		tb.Skip("measures media timing: run without -race (make test-timing)")
	}
}
