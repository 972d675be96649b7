package authgate

// /oauth2/health: whether this site can sign people in and read sessions
// right now, for load balancers and Kubernetes readiness probes. It names
// the site's providers and nothing else: no secrets, no users, no URLs.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
)

// healthJSON is the health answer.
type healthJSON struct {
	Providers map[string]string `json:"providers"`
	Store     string            `json:"store"`
}

// healthStoreTimeout bounds the session store's answer to a probe.
const healthStoreTimeout = time.Second

// serveHealth answers 200 when every provider of the site is discovered
// and the session store (if any) answers, 503 otherwise. It never waits
// for a provider: one not discovered yet is tried again in the
// background, and the next probe sees the result.
func serveHealth(s *site, w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return s.pages.json(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Use GET.")
	}
	out := healthJSON{Providers: map[string]string{}, Store: "ok"}
	status := http.StatusOK
	for _, p := range s.providers {
		state := providerReadiness(p)
		if state != "ready" {
			status = http.StatusServiceUnavailable
		}
		out.Providers[p.name] = state
	}
	if st := s.gw.sessions.store; st != nil {
		ctx, cancel := context.WithTimeout(r.Context(), min(st.timeout, healthStoreTimeout))
		err := st.client.Ping(ctx).Err()
		cancel()
		if err != nil {
			out.Store = "unavailable"
			status = http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	return json.NewEncoder(w).Encode(out)
}

// providerReadiness is "ready", or "unready: " and why, for a provider.
// A provider not discovered is tried again in the background (at most one
// attempt at a time, and no more often than discovery allows).
func providerReadiness(p *provider) string {
	if p.ready.Load() != nil {
		return "ready"
	}
	reason := "discovery in progress"
	if p.mu.TryLock() {
		err := p.lastErr
		p.mu.Unlock()
		switch {
		case err == nil:
			reason = "not discovered yet"
		case errors.Is(err, errProviderTimeout):
			reason = "discovery timed out"
		case errors.Is(err, errProviderDown):
			reason = "not reachable"
		default:
			reason = "unusable discovery answer"
		}
	}
	if _, busy := healthProbes.LoadOrStore(p, true); !busy {
		go func() {
			defer healthProbes.Delete(p)
			ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
			defer cancel()
			_, _ = p.state(ctx)
		}()
	}
	return "unready: " + reason
}

// healthProbes are the providers being discovered for a health probe.
var healthProbes sync.Map
