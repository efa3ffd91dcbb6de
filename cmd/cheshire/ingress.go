package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// Ingress by name (issue 16): https://APP.ZONE/ is the page of an app.
// The names are /dns's (`app NAME FQDN` in /dns/ctl, and NAME.app.ZONE
// in the node's zone for an app registered here); each gets a
// certificate of its own from /ca at its first handshake, and its
// requests are the app's page, /apps/NAME/, whose sessions are made
// through the signed-in user's namespace (its /apps, or the /apps of a
// node imported under /n).

// appHost returns the app a request for host is for: one the owner
// mapped with `app`, or NAME.app.ZONE of an app registered here (so a
// stranger's SNI cannot make the CA issue for any name it likes).
func (p *parts) appHost(host string) (string, bool) {
	name, ok := p.dns.AppOf(host)
	if !ok {
		return "", false
	}
	if p.dns.Mapped(host) || p.apps.Registered(name) {
		return name, true
	}
	return "", false
}

// appCertName is the name of host's certificate in /ca.
func appCertName(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if n := "app-" + host; len(n) <= 64 {
		return n
	}
	sum := sha256.Sum256([]byte(host))
	return "app-" + hex.EncodeToString(sum[:16])
}

// appTLS makes cfg serve each app name's own certificate.
func (p *parts) appTLS(cfg *tls.Config) {
	base := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if _, ok := p.appHost(hello.ServerName); ok {
			host := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
			return p.ca.Certificate(appCertName(host), []string{host})
		}
		return base(hello)
	}
}

// appRoute takes the requests for an app's name to its page (apps is
// the /apps/ handler): /, /app.js and /offer of the name are /apps/NAME/,
// /apps/NAME/app.js and /apps/NAME/offer.
func (p *parts) appRoute(apps http.Handler) func(r *http.Request) http.Handler {
	return func(r *http.Request) http.Handler {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		name, ok := p.appHost(host)
		if !ok {
			return nil
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/", "/app.js", "/offer":
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/apps/" + name + r.URL.Path
				r2.URL.RawPath = ""
				apps.ServeHTTP(w, r2)
			default:
				http.NotFound(w, r)
			}
		})
	}
}
