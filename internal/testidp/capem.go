package testidp

import "encoding/pem"

// CACertificatePEM returns the server's test CA certificate, PEM-encoded,
// for relying parties that read their trusted CAs from a file: the CA
// signs the StartTLS listener's certificate and those of
// [Server.IssueClientCertificate].
func (s *Server) CACertificatePEM() []byte {
	s.mu.Lock()
	ca, err := s.caLocked()
	s.mu.Unlock()
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}
