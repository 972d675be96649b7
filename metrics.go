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
// a handler answering any Host cannot be made to grow the registry. It
// keeps each named host's counters, so that counting a request costs a
// map read rather than hashing label values into the registry's vector.
type siteLabels struct {
	hosts sync.Map // host → *siteCounters
	named atomic.Int32
	other atomic.Pointer[siteCounters] // hosts past the cap
	mu    sync.Mutex                   // naming a new host
}

const maxSiteLabels = 100

// Decisions on a request, the values of the decision label.
const (
	decisionAllowed = iota
	decisionDenied
	decisionUnauthenticated
	numDecisions
)

var decisionNames = [numDecisions]string{"allowed", "denied", "unauthenticated"}

// siteCounters are one site's requests_total counters, from m.
type siteCounters struct {
	m *authgateMetrics
	c [numDecisions]prometheus.Counter
}

func newSiteCounters(m *authgateMetrics, site string) *siteCounters {
	sc := &siteCounters{m: m}
	for d, name := range decisionNames {
		sc.c[d] = m.requests.WithLabelValues(site, name)
	}
	return sc
}

// count counts a request to host with its decision. Known hosts and, once
// the cap is reached, unknown ones cost map reads and atomics only: a
// client inventing Host headers never takes a lock.
func (s *siteLabels) count(host string, decision int) {
	m := currentMetrics.Load()
	if m == nil {
		return
	}
	if v, ok := s.hosts.Load(host); ok {
		if sc := v.(*siteCounters); sc.m == m {
			sc.c[decision].Inc()
			return
		}
	} else if s.named.Load() >= maxSiteLabels {
		s.otherCounters(m).c[decision].Inc()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, known := s.hosts.Load(host)
	if !known && s.named.Load() >= maxSiteLabels {
		s.otherCounters(m).c[decision].Inc()
		return
	}
	if !known {
		s.named.Add(1)
	}
	sc, _ := v.(*siteCounters)
	if sc == nil || sc.m != m {
		sc = newSiteCounters(m, host)
		s.hosts.Store(host, sc)
	}
	sc.c[decision].Inc()
}

// otherCounters are the "other" site's counters from m.
func (s *siteLabels) otherCounters(m *authgateMetrics) *siteCounters {
	if sc := s.other.Load(); sc != nil && sc.m == m {
		return sc
	}
	sc := newSiteCounters(m, "other")
	s.other.Store(sc)
	return sc
}
