package dicomweb

import "testing"

func TestMatchesETag(t *testing.T) {
	const tag = `W/"abc"`
	for _, c := range []struct {
		header string
		want   bool
	}{
		{"", false},
		{`W/"abc"`, true},
		{`"abc"`, true}, // weak comparison
		{`W/"x", W/"abc"`, true},
		{`W/"x",W/"abc" `, true},
		{"*", true},
		{`W/"abcd"`, false},
		{`W/"ab"`, false},
		{`abc`, false},
	} {
		if got := matchesETag(c.header, tag); got != c.want {
			t.Errorf("If-None-Match %q: %v, want %v", c.header, got, c.want)
		}
	}
}

func TestETagNamesTheBuild(t *testing.T) {
	a, b := &Service{build: "one"}, &Service{build: "two"}
	if a.etag("frames", "sha") == b.etag("frames", "sha") {
		t.Error("two builds give the same ETag")
	}
	if a.etag("ab", "c") == a.etag("a", "bc") {
		t.Error("parts run into each other")
	}
}
