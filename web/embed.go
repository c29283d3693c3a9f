// Package web holds the browser app, embedded into the server binary, and the handler that
// serves it at /.
package web

import (
	"embed"
	"io/fs"
)

// The built app (npm run build writes dist/app). "all:" keeps dist/.gitkeep in the pattern, so
// a fresh clone without Node still compiles; the handler then serves notbuilt.html.
//
//go:embed all:dist
var dist embed.FS

//go:embed notbuilt.html
var notBuilt []byte

// App returns the built app's files (index.html, assets/...); ok is false when the app was
// not built before the Go build.
func App() (files fs.FS, ok bool) {
	sub, err := fs.Sub(dist, "dist/app")
	if err != nil {
		return nil, false
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return nil, false
	}
	return sub, true
}
