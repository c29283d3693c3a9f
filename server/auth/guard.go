package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/webserver"
)

// Route is one HTTP route with its authorization: every route of the server is one of these,
// registered through Guard, so none can skip the check.
type Route struct {
	Pattern string // net/http pattern with method, e.g. "GET /api/consultations/{id}"
	Action  Action
	// Object names what the route acts on, from the request's path (nil: nothing).
	Object func(*http.Request) (Object, error)
	// Basic accepts HTTP Basic credentials (DICOMweb, for PACS peers such as Orthanc).
	Basic bool
	// DuringPasswordChange lets a user whose password must be changed reach the route.
	DuringPasswordChange bool
	Handler              http.Handler
}

// StudyParam names the study in path parameter name.
func StudyParam(name string) func(*http.Request) (Object, error) {
	return func(r *http.Request) (Object, error) { return Study(r.PathValue(name)), nil }
}

// ConsultationParam names the consultation whose ID is path parameter name.
func ConsultationParam(name string) func(*http.Request) (Object, error) {
	return func(r *http.Request) (Object, error) {
		id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
		if err != nil || id <= 0 {
			return Object{}, ErrHidden
		}
		return Consultation(id), nil
	}
}

// Guard wraps a route's handler: it authenticates the caller (session cookie, Bearer token,
// or HTTP Basic where the route allows it), checks the CSRF token of state-changing session
// requests, and runs Check; only then does the handler see the request, with the principal
// and the client's address in its context.
func (s *Service) Guard(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := audit.WithOrigin(r.Context(), ClientIP(r), r.UserAgent())
		if rt.Action == ActPublic {
			rt.Handler.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		p, err := s.Authenticate(r, rt.Basic)
		if err == nil {
			webserver.Identify(r.Context(), p.LogName())
		}
		if err == nil && p.MustChangePassword && !rt.DuringPasswordChange {
			err = ErrPasswordChange
		}
		if err == nil {
			var obj Object
			if rt.Object != nil {
				obj, err = rt.Object(r)
			}
			if err == nil {
				err = s.Check(ctx, p, rt.Action, obj)
			}
			if errors.Is(err, ErrForbidden) || errors.Is(err, ErrHidden) {
				// Refusals are part of the record: who tried to reach what.
				e := p.AuditEntry("access.denied", obj.String(), "denied")
				e.Detail = r.Method + " " + r.URL.Path
				s.recordRead(ctx, e)
			}
		}
		if err != nil {
			s.WriteError(w, r, err, rt.Basic)
			return
		}
		rt.Handler.ServeHTTP(w, r.WithContext(WithPrincipal(ctx, p)))
	})
}

// WriteError answers an authentication or authorization error as RFC 9457 problem details.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error, basic bool) {
	switch {
	case errors.Is(err, ErrRateLimited):
		w.Header().Set("Retry-After", strconv.Itoa(int(loginEvery/time.Second)+1))
		WriteProblem(w, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(int(lockDuration/time.Second)))
		WriteProblem(w, http.StatusTooManyRequests, ErrThrottled.Error())
	case errors.Is(err, ErrLocked):
		WriteProblem(w, http.StatusForbidden, "the account is locked; an administrator can unlock it")
	case errors.Is(err, ErrUnauthenticated):
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="Sanping", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sanping"`)
		}
		WriteProblem(w, http.StatusUnauthorized, "authentication required")
	case errors.Is(err, ErrCSRF), errors.Is(err, ErrPasswordChange):
		WriteProblem(w, http.StatusForbidden, err.Error())
	case errors.Is(err, ErrForbidden):
		WriteProblem(w, http.StatusForbidden, "not allowed for your role")
	case errors.Is(err, ErrHidden):
		WriteProblem(w, http.StatusNotFound, "not found")
	case errors.Is(err, context.Canceled):
	default:
		s.log.Error("authorization failed", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteProblem(w, http.StatusInternalServerError, "internal error")
	}
}

// WriteProblem answers with an RFC 9457 problem document.
func WriteProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

// safeMethod: requests that change nothing, which CSRF checks let through.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// Authenticate finds the principal of a request: a Bearer token, else (where basic is true)
// HTTP Basic, else the session cookie.
func (s *Service) Authenticate(r *http.Request, basic bool) (*Principal, error) {
	ctx := r.Context()
	authz := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(authz, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return s.tokenPrincipal(ctx, strings.TrimSpace(cred))
	case strings.EqualFold(scheme, "Basic"):
		if !basic {
			return nil, ErrUnauthenticated
		}
		// Browsers may replay cached Basic credentials on a cross-site request: refuse those
		// that change something.
		if !safeMethod(r.Method) && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			return nil, ErrCSRF
		}
		return s.basicPrincipal(r)
	case authz != "":
		return nil, ErrUnauthenticated
	}
	secret := s.SessionSecret(r)
	if secret == "" {
		return nil, ErrUnauthenticated
	}
	p, csrf, err := s.sessionPrincipal(ctx, secret)
	if err != nil {
		return nil, err
	}
	if !safeMethod(r.Method) && !csrfMatches(r.Header.Get(CSRFHeader), csrf) {
		return nil, ErrCSRF
	}
	return p, nil
}

// basicPrincipal checks HTTP Basic credentials, through a short cache: a PACS peer sends them
// on every request, and argon2id is deliberately slow.
func (s *Service) basicPrincipal(r *http.Request) (*Principal, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := s.now()
	s.mu.Lock()
	c, hit := s.cache[key]
	s.mu.Unlock()
	if hit && now.Before(c.expires) {
		return c.p, nil
	}
	v, err, _ := s.checks.Do(string(key[:]), func() (any, error) {
		if !s.limiter.allow(ClientIP(r), s.now()) {
			return nil, ErrRateLimited
		}
		p, err := s.login(context.WithoutCancel(r.Context()), user, pass, "basic", ClientIP(r))
		if err != nil {
			s.auditLoginError(r, user, "basic", err)
			return nil, err
		}
		s.auditLogin(r, user, "login", "success", "basic", p)
		s.mu.Lock()
		if len(s.cache) > 10000 {
			clear(s.cache)
		}
		s.cache[key] = cachedCredential{p: p, expires: s.now().Add(credentialCacheTTL)}
		s.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Principal), nil
}

// Mount registers routes on mux, each behind Guard.
func (s *Service) Mount(mux *http.ServeMux, routes []Route) {
	for _, rt := range routes {
		mux.Handle(rt.Pattern, s.Guard(rt))
	}
}
