//go:build !race

package testtool

// RaceEnabled reports whether the race detector is on.
const RaceEnabled = false
