package localweb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

var (
	errGrantUnknown = errors.New("unknown or expired local read grant")
	errGrantRefused = errors.New("the county refuses this station the grant (another institution's study)")
)

// grant is a verified local read grant (the county's POST /api/local-grants/verify answer).
type grant struct {
	User      string    `json:"user"`
	Study     string    `json:"study"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type grantEntry struct {
	g       *grant
	err     error // errGrantUnknown or errGrantRefused, remembered briefly
	expires time.Time
}

// refusalTTL is how long a refused grant is remembered: a viewer asking for six frames at
// once with a bad grant costs the county one request, not six, and a grant is never wrongly
// refused for long.
const refusalTTL = 10 * time.Second

// grants verifies grants with the county and caches them until they expire.
type grants struct {
	server, token string
	client        *http.Client
	now           func() time.Time

	mu     sync.Mutex
	cache  map[[32]byte]grantEntry
	flight singleflight.Group
}

func (gs *grants) verify(ctx context.Context, token string) (*grant, error) {
	key := sha256.Sum256([]byte(token))
	now := gs.now()
	gs.mu.Lock()
	e, ok := gs.cache[key]
	gs.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.g, e.err
	}
	v, err, _ := gs.flight.Do(string(key[:]), func() (any, error) {
		g, err := gs.ask(context.WithoutCancel(ctx), token)
		var ce grantEntry
		switch {
		case err == nil:
			ce = grantEntry{g: g, expires: g.ExpiresAt}
		case errors.Is(err, errGrantUnknown), errors.Is(err, errGrantRefused):
			ce = grantEntry{err: err, expires: gs.now().Add(refusalTTL)}
		default:
			return nil, err // the county out of reach: ask again next time
		}
		gs.mu.Lock()
		if len(gs.cache) > 1000 {
			for k, c := range gs.cache {
				if !gs.now().Before(c.expires) {
					delete(gs.cache, k)
				}
			}
		}
		gs.cache[key] = ce
		gs.mu.Unlock()
		return g, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*grant), nil
}

// ask is one POST /api/local-grants/verify with the station's token.
func (gs *grants) ask(ctx context.Context, token string) (*grant, error) {
	body, _ := json.Marshal(map[string]string{"token": token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gs.server+"/api/local-grants/verify", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+gs.token)
	res, err := gs.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, errGrantUnknown
	case http.StatusForbidden:
		return nil, errGrantRefused
	default:
		return nil, fmt.Errorf("county answered %s to the grant check (is the station token valid?)", res.Status)
	}
	var g grant
	if err := json.NewDecoder(res.Body).Decode(&g); err != nil {
		return nil, fmt.Errorf("county's grant check: %w", err)
	}
	if g.Study == "" || !gs.now().Before(g.ExpiresAt) {
		return nil, errGrantUnknown
	}
	return &g, nil
}
