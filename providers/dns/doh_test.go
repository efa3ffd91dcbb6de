package dns

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// dohServer serves ts's DoH handler at /dns-query over HTTPS (HTTP/2 and
// HTTP/1.1) and returns its URL and a file holding its CA certificate.
func dohServer(t *testing.T, s *Server) (string, string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/dns-query", s.DoHHandler())
	hs := httptest.NewUnstartedServer(mux)
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
	if err := os.WriteFile(ca, pemData, 0644); err != nil {
		t.Fatal(err)
	}
	return hs.URL + "/dns-query", ca
}

func TestDoH(t *testing.T) {
	ts := newTestServer(t, "")
	ts.ctl("ctl", "zone add example.test")
	ts.ctl("zones/example.test/ctl", "add www 300 A 192.0.2.1")
	u, ca := dohServer(t, ts.Server)
	pu, _ := url.Parse(u)
	port := pu.Port()

	t.Run("kdig", func(t *testing.T) {
		out, err := run(t, "kdig", "@127.0.0.1", "-p", port, "+https=/dns-query", "+tls-ca="+ca, "+short", "www.example.test", "A")
		if err != nil || strings.TrimSpace(out) != "192.0.2.1" {
			t.Errorf("kdig +https: %v\n%s", err, out)
		}
		out, err = run(t, "kdig", "@127.0.0.1", "-p", port, "+https=/dns-query", "+https-get", "+tls-ca="+ca, "+short", "www.example.test", "A")
		if err != nil || strings.TrimSpace(out) != "192.0.2.1" {
			t.Errorf("kdig +https-get: %v\n%s", err, out)
		}
	})
	t.Run("dig", func(t *testing.T) {
		out, err := run(t, "dig", "@127.0.0.1", "-p", port, "+https=/dns-query", "+tls-ca="+ca, "+short", "www.example.test", "A")
		if err != nil || strings.TrimSpace(out) != "192.0.2.1" {
			t.Errorf("dig +https: %v\n%s", err, out)
		}
	})
	t.Run("curl", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		m.Id = 0
		wire, _ := m.Pack()
		q := base64.RawURLEncoding.EncodeToString(wire)
		body := filepath.Join(t.TempDir(), "q")
		os.WriteFile(body, wire, 0644)
		for _, args := range [][]string{
			{"-sS", "--cacert", ca, u + "?dns=" + q},
			{"-sS", "--cacert", ca, "-H", "Content-Type: application/dns-message", "--data-binary", "@" + body, u},
		} {
			out, err := run(t, "curl", args...)
			var r dns.Msg
			if err != nil || r.Unpack([]byte(out)) != nil || len(r.Answer) != 1 {
				t.Errorf("curl %v: %v %q", args, err, out)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfigFor(t, ca)}}
		for _, c2 := range []struct {
			method, query, ctype string
			body                 []byte
			status               int
			reason               string
		}{
			{"GET", "", "", nil, 400, "missing dns parameter"},
			{"GET", "dns=!!!", "", nil, 400, "base64url"},
			{"GET", "dns=AAAA", "", nil, 400, "malformed DNS message"},
			{"POST", "", "text/plain", []byte("x"), 415, "content type"},
			{"POST", "", dohType, []byte{1, 2, 3}, 400, "malformed DNS message"},
			{"POST", "", dohType, bytes.Repeat([]byte{0}, 70000), 413, "too large"},
			{"PUT", "", "", nil, 405, "method not allowed"},
		} {
			req, _ := http.NewRequest(c2.method, u+"?"+c2.query, bytes.NewReader(c2.body))
			if c2.ctype != "" {
				req.Header.Set("Content-Type", c2.ctype)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c2.status || !strings.Contains(string(b), c2.reason) {
				t.Errorf("%s %q: %d %q, want %d %q", c2.method, c2.query, resp.StatusCode, b, c2.status, c2.reason)
			}
		}
	})
}
