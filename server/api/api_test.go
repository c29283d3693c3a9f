package api

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	for _, c := range []struct {
		ct, body string
		want     error
	}{
		{"application/json", `{"name":"韦","n":1}`, nil},
		{"application/json; charset=utf-8", `{"name":"x"}`, nil},
		{"text/plain", `{"name":"x"}`, errUnsupportedMedia},
		{"", `{"name":"x"}`, errUnsupportedMedia},
		{"application/json", `{"name":"x","extra":1}`, errBadRequest},
		{"application/json", `{"n":"one"}`, errBadRequest},
		{"application/json", `{"name":"x"} {"name":"y"}`, errBadRequest},
		{"application/json", `{"name":"x"} trailing`, errBadRequest},
		{"application/json", `[1,2]`, errBadRequest},
		{"application/json", ``, errBadRequest},
		{"application/json", `{"name":"` + strings.Repeat("x", maxJSON) + `"}`, errTooLarge},
	} {
		req := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		var v body
		err := decode(httptest.NewRecorder(), req, &v)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("decode(%q, %.40q): %v, want %v", c.ct, c.body, err, c.want)
		}
	}
}

func TestCSVSafe(t *testing.T) {
	got := csvSafe([]string{"=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "韦东平", "", "a=b"})
	want := []string{"'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "韦东平", "", "a=b"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: %q, want %q", i, got[i], want[i])
		}
	}
}
