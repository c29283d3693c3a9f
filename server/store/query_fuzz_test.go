package store

import (
	"strings"
	"testing"
)

// FuzzCondition: QIDO matching values from any client become a SQL condition whose
// placeholders match its arguments, or a clean error; never a panic.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"韦*", "Doe^J?hn", "20240101-20241231", "-2024", "1.2.3\\4.5,6", "[*]", "CT\\MR", "12"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, val string, fuzzy bool) {
		for kw, m := range matchColumns {
			cond, args, err := condition(m, val, fuzzy)
			if err != nil {
				continue
			}
			if n := strings.Count(cond, "?"); n != len(args) {
				t.Fatalf("%s=%q: %d placeholders, %d args (%s)", kw, val, n, len(args), cond)
			}
		}
	})
}
