package authgate

import (
	"net"
	"net/url"
	"strings"
)

const maxReturnURLLen = 4096

// redirectPolicy decides where a browser may be sent after login or logout.
type redirectPolicy struct {
	// domains from allowed_redirect_domains, lower-cased. ".example.com"
	// allows example.com and every subdomain; "example.com" only itself;
	// "example.com:8443" also pins the port.
	domains []string
}

// safeReturnURL returns raw when it is a safe place to send the browser:
// a same-origin path, or an absolute http(s) URL on the request's own host
// or inside the allowed domains. Anything else yields "/". reqHost is the
// Host the request came in on.
func (p redirectPolicy) safeReturnURL(raw, reqHost string) string {
	if u, ok := p.check(raw, reqHost); ok {
		return u
	}
	return "/"
}

func (p redirectPolicy) check(raw, reqHost string) (string, bool) {
	if raw == "" || len(raw) > maxReturnURLLen {
		return "", false
	}
	// Browsers read a backslash as a slash and drop tabs and newlines, so
	// any of them can turn a path into another host. None belongs in a
	// return URL.
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c == '\\' || c < 0x21 || c == 0x7f {
			return "", false
		}
	}
	if raw[0] == '/' {
		if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
			return "", false // protocol-relative: another host
		}
		// A decoded //host or /\host is as dangerous once some backend
		// or proxy decodes it; refuse the encoded forms too.
		if dec, err := url.PathUnescape(raw); err != nil || strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") ||
			strings.ContainsAny(dec, "\\\r\n\t\x00") {
			return "", false
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			return "", false
		}
		return raw, true
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if !validHostname(host) {
		return "", false
	}
	if strings.EqualFold(u.Host, reqHost) || p.allows(host, u.Port()) {
		return u.String(), true
	}
	return "", false
}

// allows reports whether host (and port) fall inside the allowed domains.
func (p redirectPolicy) allows(host, port string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, d := range p.domains {
		dHost, dPort := d, ""
		if h, pt, err := net.SplitHostPort(d); err == nil {
			dHost, dPort = h, pt
		}
		if dPort != "" && dPort != port {
			continue
		}
		if apex, ok := strings.CutPrefix(dHost, "."); ok {
			if host == apex || strings.HasSuffix(host, dHost) {
				return true
			}
		} else if host == dHost {
			return true
		}
	}
	return false
}

// validHostname accepts DNS names and IP literals only.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return !strings.Contains(h, "..")
}
