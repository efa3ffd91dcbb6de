package acme

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// dnsError is a failure to resolve a name during validation.
type dnsError struct {
	host string
	err  error
}

func (e *dnsError) Error() string { return fmt.Sprintf("resolving %s: %v", e.host, e.err) }
func (e *dnsError) Unwrap() error { return e.err }

// dial connects to addr, resolving its host with Options.Resolve and
// trying up to four of its addresses in turn.
func (s *Server) dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		ips, err = s.o.Resolve(ctx, host)
		if err != nil {
			return nil, &dnsError{host, err}
		}
		if len(ips) == 0 {
			return nil, &dnsError{host, errors.New("no addresses")}
		}
	}
	var errs []error
	for i, ip := range ips {
		if i == 4 {
			break
		}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// checkRedirect lets the http-01 fetch follow up to maxRedirects
// redirects to http or https URLs on ports 80, 443 or HTTP01Port of the
// name being validated, and nowhere else: RFC 8555 section 8.3 lets a
// server follow redirects, and a redirect off the name would make the
// server fetch, from inside the node's network, wherever the client says.
func (s *Server) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("more than %d redirects", maxRedirects)
	}
	if len(via) > 0 && !strings.EqualFold(req.URL.Hostname(), via[0].URL.Hostname()) {
		return fmt.Errorf("redirect to %q, off the validated name %q", req.URL.Hostname(), via[0].URL.Hostname())
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to scheme %q", req.URL.Scheme)
	}
	switch p := req.URL.Port(); p {
	case "", "80", "443", strconv.Itoa(s.o.HTTP01Port):
	default:
		return fmt.Errorf("redirect to port %s", p)
	}
	return nil
}

// http01URL is where the key authorization for token is fetched from.
func (s *Server) http01URL(id identifier, token string) string {
	host := id.Value
	if s.o.HTTP01Port != 80 {
		host = net.JoinHostPort(host, strconv.Itoa(s.o.HTTP01Port))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + "/.well-known/acme-challenge/" + token
}

// checkHTTP01 fetches the challenge file and compares it with keyAuth
// (RFC 8555 section 8.3). A nil problem means the challenge is met.
func (s *Server) checkHTTP01(ctx context.Context, id identifier, token, keyAuth string) *problem {
	url := s.http01URL(id, token)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return malformed("http-01: %v", err)
	}
	req.Header.Set("User-Agent", "cheshire-acme (http-01 validation)")
	res, err := s.client.Do(req)
	if err != nil {
		var de *dnsError
		if errors.As(err, &de) {
			return newProblem(http.StatusBadRequest, errDNS, "http-01: %v", de)
		}
		return newProblem(http.StatusBadRequest, errConnection, "http-01: fetching %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return unauthorized("http-01: %s answered HTTP %d", res.Request.URL, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxChallengeBody+1))
	if err != nil {
		return newProblem(http.StatusBadRequest, errConnection, "http-01: reading %s: %v", res.Request.URL, err)
	}
	if len(body) > maxChallengeBody {
		return unauthorized("http-01: %s answered more than %d bytes", res.Request.URL, maxChallengeBody)
	}
	if strings.TrimRight(string(body), " \t\r\n") != keyAuth {
		return newProblem(http.StatusForbidden, errIncorrectResponse,
			"http-01: %s answered %d bytes that are not the key authorization", res.Request.URL, len(body))
	}
	return nil
}

// runValidation validates an authorization's http-01 challenge and
// records the outcome: challenge and authorization valid, or both
// invalid with the problem.
func (s *Server) runValidation(authzID string, id identifier, token, keyAuth string) {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	defer func() { <-s.sem }()
	ctx, cancel := context.WithTimeout(s.ctx, validationTimeout)
	pr := s.checkHTTP01(ctx, id, token, keyAuth)
	cancel()
	if s.ctx.Err() != nil {
		return // closing: the outcome may be the cancellation's
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.authzs[authzID]
	if a == nil || len(a.Challenges) == 0 || a.Challenges[0].Status != statusProcessing {
		return
	}
	c := a.Challenges[0]
	now := s.now()
	pending := a.status(now) == statusPending
	if pr == nil {
		c.Status, c.Validated = statusValid, &now
		if pending {
			a.Status, a.Expires = statusValid, now.Add(validAuthzLife)
		}
		s.log.Info("validation succeeded", "authz", a.ID, "identifier", id.Value)
	} else {
		c.Status, c.Error = statusInvalid, pr
		if pending {
			a.Status = statusInvalid
		}
		s.log.Info("validation failed", "authz", a.ID, "identifier", id.Value, "problem", pr.Type, "detail", pr.Detail)
	}
	if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
		s.log.Warn("saving authorization", "authz", a.ID, "err", err)
	}
}
