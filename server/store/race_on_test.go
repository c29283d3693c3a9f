//go:build race

package store_test

// raceEnabled says the test binary runs with the race detector; the crash test builds the
// server the same way so that both share the build cache.
const raceEnabled = true
