package testidp

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"
)

// TestCACertificatePEM: the PEM is the CA that the TLS listener's
// certificate chains to.
func TestCACertificatePEM(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.StartTLS(); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertificatePEM()) {
		t.Fatal("CACertificatePEM is no PEM certificate")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(s.TLSURL() + PathDiscovery)
	if err != nil {
		t.Fatalf("the TLS listener with the PEM's CA trusted: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("discovery over TLS: %d", resp.StatusCode)
	}
	c = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	if _, err := c.Get(s.TLSURL() + PathDiscovery); err == nil {
		t.Error("the TLS listener is trusted without the CA")
	}
}
