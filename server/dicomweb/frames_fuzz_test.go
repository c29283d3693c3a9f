package dicomweb

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseFrameList: any {frames} path segment is refused or read as distinct frame numbers
// from 1, no more of them than the list has items and never more than MaxFrameList.
func FuzzParseFrameList(f *testing.F) {
	for _, s := range []string{"1", "1,2,3", "1,1", "0", "-1", "x", "1,,2", " 2 , 3", strings.Repeat("1,", 20) + "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		nums, err := ParseFrameList(v)
		if err != nil {
			return
		}
		if len(nums) == 0 || len(nums) > MaxFrameList || len(nums) != strings.Count(v, ",")+1 {
			t.Fatalf("%q: %d frames", v, len(nums))
		}
		seen := map[int]bool{}
		for _, n := range nums {
			if n < 1 || seen[n] {
				t.Fatalf("%q: frame %s", v, strconv.Itoa(n))
			}
			seen[n] = true
		}
	})
}
