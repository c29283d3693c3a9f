// Package web holds the browser app, embedded into the server binary.
package web

import "embed"

// Files is the built browser app served at /.
//
//go:embed static
var Files embed.FS
