package localweb

import (
	"testing"

	"github.com/sanping/sanping/server/dicomweb"
)

// FuzzRequest: the hand-read parts of a browser's request (Accept, the frame list) never
// panic, and a frame list read is numbers from 1, each once.
func FuzzRequest(f *testing.F) {
	f.Add(`multipart/related; type="application/octet-stream"; transfer-syntax=*`, "1,2,3")
	f.Add(`application/octet-stream;;=;transfer-syntax="`, "0,,1")
	f.Fuzz(func(t *testing.T, accept, frames string) {
		negotiate(accept, "1.2.840.10008.1.2.1")
		nums, err := dicomweb.ParseFrameList(frames)
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, n := range nums {
			if n < 1 || seen[n] {
				t.Fatalf("%q gave %v", frames, nums)
			}
			seen[n] = true
		}
	})
}
