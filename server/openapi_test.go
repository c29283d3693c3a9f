package server

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIMatchesRoutes: every route is in docs/openapi.yaml and every path and method in
// the file is served. The catch-alls that only answer 404 for unknown paths are left out.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !slices.Contains([]string{"get", "put", "post", "delete", "patch", "head", "options"}, method) {
				continue // parameters, summary, ...
			}
			documented[strings.ToUpper(method)+" "+path] = true
			if m, ok := op.(map[string]any); !ok || m["responses"] == nil {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range newAuthzFixture(t).app.routes {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok {
			method, path = "GET", rt.Pattern
		}
		if path == "/api/" || path == "/dicom-web/" {
			continue
		}
		path = strings.ReplaceAll(path, "...}", "}")
		served[method+" "+path] = true
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("%s is served but not in docs/openapi.yaml", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is in docs/openapi.yaml but not served", k)
		}
	}
}
