package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"

	"sanping/server/api"
	"sanping/server/audit"
	"sanping/server/auth"
	"sanping/server/consult"
	"sanping/server/dicomweb"
	"sanping/server/org"
	"sanping/server/store"
	"sanping/web"
)

// app is the server's services wired together, and every route it serves.
type app struct {
	auth    *auth.Service
	org     *org.Service
	consult *consult.Service
	trail   *audit.Log
	routes  []auth.Route
}

// newApp opens every service on the store's database and lists the routes. Each route is an
// auth.Route: the one authorization check (auth.Service.Check) runs before its handler.
func newApp(ctx context.Context, st *store.Store, cfg Config, log *slog.Logger) (*app, error) {
	db := st.DB()
	trail, err := audit.Open(ctx, db, nil)
	if err != nil {
		return nil, err
	}
	// Institutions first: users and consultations refer to them.
	orgs, err := org.New(ctx, db)
	if err != nil {
		return nil, err
	}
	au, err := auth.New(ctx, db, log)
	if err != nil {
		return nil, err
	}
	au.SetAudit(trail)
	au.SetSecureCookies(cfg.TLSCert != "")
	cons, err := consult.New(ctx, db, trail, st.Dir(), nil)
	if err != nil {
		return nil, err
	}
	cons.SetPasswordCheck(au.VerifyPassword)
	dw := dicomweb.New(dicomweb.Config{Store: st, Base: "/dicom-web", MaxRequestBody: cfg.MaxRequestBody, Logger: log, Audit: trail})
	rest := api.New(api.Config{Auth: au, Org: orgs, Consult: cons, Audit: trail, Logger: log})
	static, err := fs.Sub(web.Files, "static")
	if err != nil {
		return nil, fmt.Errorf("opening embedded web app: %w", err)
	}
	routes := []auth.Route{
		{Pattern: "GET /healthz", Action: auth.ActPublic, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
		})},
		{Pattern: "/", Action: auth.ActPublic, Handler: staticFiles(static)},
	}
	routes = append(routes, rest.Routes()...)
	routes = append(routes, dw.Routes()...)
	return &app{auth: au, org: orgs, consult: cons, trail: trail, routes: routes}, nil
}

// staticFiles serves the embedded browser app (GET and HEAD only).
func staticFiles(files fs.FS) http.Handler {
	fsrv := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			auth.WriteProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
			return
		}
		fsrv.ServeHTTP(w, r)
	})
}
