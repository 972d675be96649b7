package authgate

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsAtCaddyMetricsEndpoint(t *testing.T) {
	s := setupSite(t, testidp.Options{AccessTokenTTL: 5 * time.Minute}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	advanceClock(t, 6*time.Minute)
	if resp, _ := b.api("GET", s.origin+"/refresh-me"); resp.StatusCode != 200 {
		t.Fatalf("refresh request: %d", resp.StatusCode)
	}
	newBrowser(t).api("GET", s.origin+"/anonymous")

	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`authgate_logins_total{provider="corp",reason="",result="started"}`,
		`authgate_logins_total{provider="corp",reason="",result="completed"}`,
		`authgate_refreshes_total{provider="corp",result="ok"}`,
		fmt.Sprintf(`authgate_requests_total{decision="allowed",site="127.0.0.1:%d"}`, s.port),
		fmt.Sprintf(`authgate_requests_total{decision="unauthenticated",site="127.0.0.1:%d"}`, s.port),
		`authgate_provider_request_duration_seconds_bucket{endpoint="token",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="discovery",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="jwks",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="userinfo",provider="corp"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "authgate_provider_request_duration_seconds_count") {
					t.Log(l)
				}
			}
		}
	}
}

// TestSiteLabelsBounded: the site label names the first maxSiteLabels
// hosts and counts every later one as "other", however many Host headers a
// client invents; counts survive the metrics being registered anew.
func TestSiteLabelsBounded(t *testing.T) {
	prev := currentMetrics.Load()
	t.Cleanup(func() { currentMetrics.Store(prev) })
	reg := prometheus.NewRegistry()
	registerMetrics(reg)

	var s siteLabels
	const hosts = maxSiteLabels + 50
	for i := range hosts {
		host := fmt.Sprintf("h%d.example.test", i)
		s.count(host, decisionAllowed)
		s.count(host, decisionDenied)
	}
	s.count("h0.example.test", decisionAllowed)

	series := requestSeries(t, reg)
	// Each named site, and "other", has all its decisions' series, from
	// zero.
	if want := numDecisions * (maxSiteLabels + 1); len(series) != want {
		t.Errorf("%d series, want %d: %d named sites and other, with %d decisions each", len(series), want, maxSiteLabels, numDecisions)
	}
	if got := series["other/allowed"]; got != 50 {
		t.Errorf("other/allowed = %v, want 50", got)
	}
	if got := series["h0.example.test/allowed"]; got != 2 {
		t.Errorf("h0/allowed = %v, want 2", got)
	}

	// A new configuration registers its collectors again, reusing the
	// registered ones: counting goes on in the same series.
	registerMetrics(reg)
	s.count("h0.example.test", decisionAllowed)
	s.count("new.example.test", decisionAllowed)
	after := requestSeries(t, reg)
	if got := after["h0.example.test/allowed"]; got != 3 {
		t.Errorf("after re-registering, h0/allowed = %v, want 3", got)
	}
	if got := after["other/allowed"]; got != 51 {
		t.Errorf("after re-registering, other/allowed = %v, want 51", got)
	}
}

// requestSeries reads authgate_requests_total from reg as site/decision →
// count.
func requestSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "authgate_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["site"]+"/"+labels["decision"]] = m.GetCounter().GetValue()
		}
	}
	return out
}
