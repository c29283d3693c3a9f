//go:build !linux

package jpegls

import "time"

// threadCPU is not measured here: the benchmarks report wall-clock figures only.
func threadCPU() time.Duration { return 0 }
