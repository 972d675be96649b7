package testidp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"time"
)

// testCA is the server's own certificate authority: it signs the TLS
// server certificate and the client certificates of IssueClientCertificate.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "testidp CA", Organization: []string{"testidp"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, key: key}, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

// issue creates a leaf certificate signed by the CA.
func (ca *testCA) issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (s *Server) caLocked() (*testCA, error) {
	if s.ca == nil {
		ca, err := newTestCA()
		if err != nil {
			return nil, err
		}
		s.ca = ca
	}
	return s.ca, nil
}

// StartTLS serves the server's endpoints over TLS on 127.0.0.1 (random
// port) as well, for RFC 8705 mutual-TLS client authentication. The
// server certificate (for 127.0.0.1 and localhost) is signed by the
// server's own test CA: trust it with [Server.RootCAs]. Client
// certificates are requested (tls.VerifyClientCertIfGiven) and must chain
// to that CA or to one of Options.TLSClientCAs; a client presenting an
// untrusted certificate fails the handshake, one presenting none can still
// use the other methods.
//
// Called after Start (or SetIssuer), the TLS listener is an mTLS alias:
// the issuer stays the plain one and discovery lists the TLS URLs in
// mtls_endpoint_aliases. Called first, the TLS URL becomes the issuer.
func (s *Server) StartTLS() error {
	s.mu.Lock()
	if s.tlsSrv != nil {
		s.mu.Unlock()
		return errors.New("testidp: TLS already started")
	}
	ca, err := s.caLocked()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	cert, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	for _, c := range s.opts.TLSClientCAs {
		clientCAs.AddCert(c)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
	}
	s.mu.Lock()
	if s.tlsSrv != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("testidp: TLS already started")
	}
	s.tlsURL = "https://" + ln.Addr().String()
	if s.baseURL == "" {
		s.baseURL = s.tlsURL
	}
	// Handshake failures (untrusted client certificates) are expected in
	// tests; do not log them.
	s.tlsSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	srv := s.tlsSrv
	s.mu.Unlock()
	go srv.Serve(tls.NewListener(ln, cfg))
	return nil
}

// TLSURL returns the base URL of the TLS listener (without IssuerPath), or
// "" before StartTLS.
func (s *Server) TLSURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tlsURL
}

// mtlsIssuer is the issuer-equivalent prefix of the mTLS endpoint aliases,
// "" when there are none.
func (s *Server) mtlsIssuer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsURL == "" || s.tlsURL == s.baseURL {
		return ""
	}
	return s.tlsURL + s.issuerPath
}

// RootCAs returns a pool holding the server's test CA, which signs the TLS
// server certificate and the certificates of IssueClientCertificate.
func (s *Server) RootCAs() *x509.CertPool {
	s.mu.Lock()
	ca, err := s.caLocked()
	s.mu.Unlock()
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// IssueClientCertificate returns a client certificate (P-256 key, extended
// key usage clientAuth) for subject, signed by the server's test CA and so
// trusted for tls_client_auth. Register subject.String() as the client's
// TLSClientAuthSubjectDN.
func (s *Server) IssueClientCertificate(subject pkix.Name) (tls.Certificate, error) {
	s.mu.Lock()
	ca, err := s.caLocked()
	s.mu.Unlock()
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue(&x509.Certificate{Subject: subject, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// TLSClient returns an HTTP client that trusts the server's TLS
// certificate, presents cert when it is not nil, and does not follow
// redirects.
func (s *Server) TLSClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: s.RootCAs(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
