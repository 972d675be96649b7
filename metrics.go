package authgate

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// authgateMetrics are registered in Caddy's own Prometheus registry, so
// they appear at Caddy's /metrics next to Caddy's.
type authgateMetrics struct {
	logins          *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	requests        *prometheus.CounterVec
	providerLatency *prometheus.HistogramVec
}

var currentMetrics atomic.Pointer[authgateMetrics]

func newMetrics() *authgateMetrics {
	return &authgateMetrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "authgate", Name: "logins_total",
			Help: "Logins by provider and result (started, completed, failed), with the failure reason.",
		}, []string{"provider", "result", "reason"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "authgate", Name: "refreshes_total",
			Help: "Token refreshes by provider and result (ok, invalid_grant, error).",
		}, []string{"provider", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "authgate", Name: "requests_total",
			Help: "Requests by site (host) and decision (allowed, denied, unauthenticated).",
		}, []string{"site", "decision"}),
		providerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "authgate", Name: "provider_request_duration_seconds",
			Help:    "Latency of requests to identity providers by provider and endpoint.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "endpoint"}),
	}
}

// registerMetrics registers the collectors in reg, reusing the ones a
// previous configuration registered there.
func registerMetrics(reg *prometheus.Registry) {
	m := newMetrics()
	if reg == nil {
		currentMetrics.Store(m)
		return
	}
	m.logins = registerOrReuse(reg, m.logins)
	m.refreshes = registerOrReuse(reg, m.refreshes)
	m.requests = registerOrReuse(reg, m.requests)
	m.providerLatency = registerOrReuse(reg, m.providerLatency)
	currentMetrics.Store(m)
}

func registerOrReuse[T prometheus.Collector](reg *prometheus.Registry, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}

func metricLogin(provider, result, reason string) {
	if m := currentMetrics.Load(); m != nil {
		m.logins.WithLabelValues(provider, result, reason).Inc()
	}
}

func metricRefresh(provider, result string) {
	if m := currentMetrics.Load(); m != nil {
		m.refreshes.WithLabelValues(provider, result).Inc()
	}
}

func metricRequest(site, decision string) {
	if m := currentMetrics.Load(); m != nil {
		m.requests.WithLabelValues(site, decision).Inc()
	}
}

func metricProviderLatency(provider, endpoint string, since time.Time) {
	if m := currentMetrics.Load(); m != nil {
		m.providerLatency.WithLabelValues(provider, endpoint).Observe(time.Since(since).Seconds())
	}
}

// timedTransport observes the latency of every request to a provider,
// labelled by the endpoint it went to.
type timedTransport struct {
	base     http.RoundTripper
	provider string
	// endpoints maps a URL path to its endpoint name; others are "other".
	endpoints func(path string) string
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	metricProviderLatency(t.provider, t.endpoints(r.URL.Path), start)
	return resp, err
}

// siteLabels bounds the cardinality of the site label: the first
// maxSiteLabels hosts are labelled by name, any later one "other", so that
// a handler answering any Host cannot be made to grow the registry.
type siteLabels struct {
	mu    sync.RWMutex
	known map[string]bool
}

const maxSiteLabels = 100

func (s *siteLabels) label(host string) string {
	s.mu.RLock()
	ok := s.known[host]
	n := len(s.known)
	s.mu.RUnlock()
	if ok {
		return host
	}
	if n >= maxSiteLabels {
		return "other"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil {
		s.known = map[string]bool{}
	}
	if len(s.known) >= maxSiteLabels {
		return "other"
	}
	s.known[host] = true
	return host
}
