package main

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// echoPath is answered by the backend with a dump of the request it
// received, instead of backendBody: the check that the same-bytes site
// forwards what authgate forwards.
const echoPath = "/bench-echo"

// maxEcho bounds the dump the check reads.
const maxEcho = 1 << 20

// writeEcho answers with a canonical dump of r as the backend received
// it: the request line, then "Host: ..." and every header, one line per
// value, names sorted, values in the order received.
func writeEcho(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
	fmt.Fprintf(&b, "Host: %s\n", r.Host)
	names := make([]string, 0, len(r.Header))
	for n := range r.Header {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, v := range r.Header[n] {
			fmt.Fprintf(&b, "%s: %s\n", n, v)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// echoExempt are the headers whose values legitimately differ between
// the sites: their values are left out of the comparison, their presence
// is still compared. Nothing else may differ: X-Forwarded-For and
// X-Forwarded-Proto (both sites are reached from 127.0.0.1 over http),
// Via and Accept-Encoding (added by reverse_proxy and its transport alike)
// and the client's own headers are compared too.
var echoExempt = map[string]bool{
	// reverse_proxy passes the client's Host through: it names the site,
	// and the sites differ by port.
	"Host": true,
	// Caddy sets X-Forwarded-Host from that same Host.
	"X-Forwarded-Host": true,
}

// echoLines is a dump's lines, with the values of echoExempt headers
// blanked.
func echoLines(dump string) []string {
	lines := strings.Split(strings.TrimSuffix(dump, "\n"), "\n")
	for i, l := range lines {
		if name, _, ok := strings.Cut(l, ": "); ok && i > 0 {
			if echoExempt[name] {
				lines[i] = name + ": (differs by site)"
			}
		}
	}
	return lines
}

// echo sends t's request (its Cookie header included) to echoPath and
// returns the backend's dump of what it received.
func echo(t *target) (string, error) {
	resp, err := t.client.Do(t.newRequest(echoPath))
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEcho))
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: status %d for %s: %.200q", t.name, resp.StatusCode, echoPath, body)
	}
	return string(body), nil
}

// headerBytes is the size of a dump's header lines as they go over the
// wire ("Name: value\r\n"), the request line left out.
func headerBytes(dump string) int {
	n := 0
	for i, l := range strings.Split(strings.TrimSuffix(dump, "\n"), "\n") {
		if i > 0 {
			n += len(l) + 2
		}
	}
	return n
}

// checkSameBytes asks the backend what the authgate site and the
// same-bytes site forward for the same client request, and returns an
// error naming every difference outside echoExempt. It prints the size of
// what each target's upstream requests carry.
func checkSameBytes(plain, auth, same *target) error {
	dumps := make([]string, 3)
	for i, t := range []*target{plain, auth, same} {
		d, err := echo(t)
		if err != nil {
			return fmt.Errorf("echo check: %w", err)
		}
		dumps[i] = d
	}
	fmt.Printf("  upstream request headers (backend's view): plain %d B, authgate %d B, same bytes %d B; client's Cookie header %d B\n",
		headerBytes(dumps[0]), headerBytes(dumps[1]), headerBytes(dumps[2]), len(auth.cookie))
	a, s := echoLines(dumps[1]), echoLines(dumps[2])
	onlyAuth, onlySame := multisetDiff(a, s), multisetDiff(s, a)
	if len(onlyAuth) == 0 && len(onlySame) == 0 {
		exempt := slices.Sorted(maps.Keys(echoExempt))
		fmt.Printf("  echo check: ok, the same-bytes site forwards what authgate forwards (%d lines; by site only: %s)\n", len(a), strings.Join(exempt, ", "))
		return nil
	}
	var b strings.Builder
	b.WriteString("echo check: the same-bytes site does not forward what authgate forwards:")
	for _, l := range onlyAuth {
		fmt.Fprintf(&b, "\n      only from authgate:   %s", shorten(l))
	}
	for _, l := range onlySame {
		fmt.Fprintf(&b, "\n      only from same bytes: %s", shorten(l))
	}
	return fmt.Errorf("%s", b.String())
}

// multisetDiff is the lines of a that b lacks, counting repeats.
func multisetDiff(a, b []string) []string {
	left := map[string]int{}
	for _, l := range b {
		left[l]++
	}
	var out []string
	for _, l := range a {
		if left[l] > 0 {
			left[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}

// shorten keeps a long header line (a 6 KB groups list) readable.
func shorten(l string) string {
	const keep = 120
	if len(l) <= keep {
		return l
	}
	return fmt.Sprintf("%s… (%d bytes)", l[:keep], len(l))
}
