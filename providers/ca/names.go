package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of what a certificate may name.
const (
	maxNameLen = 64  // a certificate's name in certs/
	maxSANs    = 100 // subject alternative names of one certificate
	maxSANLen  = 253 // one name
)

// validName reports whether name may name a certificate in certs/ (and a
// directory on disk): letters, digits, '.', '_' and '-', not beginning
// with '.' or '-', at most 64 bytes.
func validName(name string) bool {
	if name == "" || len(name) > maxNameLen || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !validName(name) {
		return fmt.Errorf("ca: bad certificate name %q (letters, digits, . _ - only, at most %d)", cut(name, 40), maxNameLen)
	}
	return nil
}

// cut shortens s for an error message.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sanSet is the subject alternative names of a certificate.
type sanSet struct {
	dns    []string
	ips    []net.IP
	emails []string
	uris   []*url.URL
}

// parseSANs sorts names into DNS names, IP addresses, email addresses
// (with an @) and URIs (with ://), refusing anything else.
func parseSANs(names []string) (sanSet, error) {
	var s sanSet
	if len(names) > maxSANs {
		return s, fmt.Errorf("ca: too many names (%d, at most %d)", len(names), maxSANs)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || len(n) > maxSANLen {
			return s, fmt.Errorf("ca: bad name %q", cut(n, 40))
		}
		switch {
		case strings.Contains(n, "://"):
			u, err := url.Parse(n)
			if err != nil || u.Scheme == "" || u.Host == "" && u.Opaque == "" && u.Path == "" {
				return s, fmt.Errorf("ca: bad uri %q", cut(n, 40))
			}
			if k := "uri " + u.String(); !seen[k] {
				seen[k] = true
				s.uris = append(s.uris, u)
			}
		case strings.Contains(n, "@"):
			a, err := mail.ParseAddress(n)
			if err != nil || a.Address != n || a.Name != "" {
				return s, fmt.Errorf("ca: bad email address %q", cut(n, 40))
			}
			if k := "email " + n; !seen[k] {
				seen[k] = true
				s.emails = append(s.emails, n)
			}
		default:
			if ip := net.ParseIP(n); ip != nil {
				if v4 := ip.To4(); v4 != nil {
					ip = v4
				}
				if k := "ip " + ip.String(); !seen[k] {
					seen[k] = true
					s.ips = append(s.ips, ip)
				}
				continue
			}
			d := strings.ToLower(strings.TrimSuffix(n, "."))
			if !validDNSName(d) {
				return s, fmt.Errorf("ca: bad dns name %q", cut(n, 40))
			}
			if k := "dns " + d; !seen[k] {
				seen[k] = true
				s.dns = append(s.dns, d)
			}
		}
	}
	return s, nil
}

// validDNSName reports whether d is a host name, possibly with a leading
// wildcard label: labels of letters, digits, '-' and '_', 1 to 63 bytes,
// not beginning or ending with '-'; at most 253 bytes.
func validDNSName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	// All-numeric names that are not addresses are refused.
	if _, err := strconv.Atoi(strings.ReplaceAll(d, ".", "")); err == nil {
		return false
	}
	return true
}

// empty reports whether s names nothing.
func (s sanSet) empty() bool {
	return len(s.dns)+len(s.ips)+len(s.emails)+len(s.uris) == 0
}

// strings returns the names as words: DNS names, addresses, emails, URIs.
func (s sanSet) strings() []string {
	var out []string
	out = append(out, s.dns...)
	for _, ip := range s.ips {
		out = append(out, ip.String())
	}
	out = append(out, s.emails...)
	for _, u := range s.uris {
		out = append(out, u.String())
	}
	return out
}

// key is the names in a canonical order, for comparison.
func (s sanSet) key() string {
	w := s.strings()
	slices.Sort(w)
	return strings.Join(w, " ")
}

// apply sets the names of tmpl.
func (s sanSet) apply(tmpl *x509.Certificate) {
	tmpl.DNSNames = s.dns
	tmpl.IPAddresses = s.ips
	tmpl.EmailAddresses = s.emails
	tmpl.URIs = s.uris
}

// certSANs returns the names of a certificate.
func certSANs(c *x509.Certificate) sanSet {
	return sanSet{dns: c.DNSNames, ips: c.IPAddresses, emails: c.EmailAddresses, uris: c.URIs}
}

// parseSerial reads a serial number in hex, with optional colons and
// 0x prefix, as openssl and this package print them.
func parseSerial(s string) (*big.Int, error) {
	t := strings.ToLower(strings.ReplaceAll(s, ":", ""))
	t = strings.TrimPrefix(t, "0x")
	if t == "" || len(t) > 64 {
		return nil, fmt.Errorf("ca: bad serial %q", cut(s, 40))
	}
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("ca: bad serial %q (want hex)", cut(s, 40))
	}
	return n, nil
}

// serialText is the form serials are shown and kept in: lower-case hex.
func serialText(n *big.Int) string { return n.Text(16) }

// Revocation reasons of RFC 5280, by the names it gives them.
var reasonCodes = []struct {
	name string
	code int
}{
	{"unspecified", 0},
	{"keyCompromise", 1},
	{"cACompromise", 2},
	{"affiliationChanged", 3},
	{"superseded", 4},
	{"cessationOfOperation", 5},
	{"certificateHold", 6},
	{"privilegeWithdrawn", 9},
	{"aACompromise", 10},
}

// parseReason returns the code of a reason named as RFC 5280 does (any
// case); "" is unspecified.
func parseReason(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for _, r := range reasonCodes {
		if strings.EqualFold(s, r.name) {
			return r.code, nil
		}
	}
	names := make([]string, len(reasonCodes))
	for i, r := range reasonCodes {
		names[i] = r.name
	}
	return 0, fmt.Errorf("ca: unknown reason %q (want one of %s)", cut(s, 30), strings.Join(names, ", "))
}

// reasonName is the RFC 5280 name of code.
func reasonName(code int) string {
	for _, r := range reasonCodes {
		if r.code == code {
			return r.name
		}
	}
	return strconv.Itoa(code)
}

// parseTTL reads a duration as time.ParseDuration does, or a count of
// days ("30d").
func parseTTL(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100000 {
			return 0, fmt.Errorf("ca: bad ttl %q", cut(s, 30))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	ttl, err := time.ParseDuration(s)
	if err != nil || ttl <= 0 {
		return 0, fmt.Errorf("ca: bad ttl %q", cut(s, 30))
	}
	return ttl, nil
}

// errNoKey is a key that does not match its certificate.
var errNoKey = errors.New("ca: key does not match certificate")
