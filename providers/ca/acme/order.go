package acme

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Wire forms of orders, authorizations and challenges.
type wireOrder struct {
	Status         string       `json:"status"`
	Expires        string       `json:"expires"`
	Identifiers    []identifier `json:"identifiers"`
	NotBefore      string       `json:"notBefore,omitempty"`
	NotAfter       string       `json:"notAfter,omitempty"`
	Error          *problem     `json:"error,omitempty"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate,omitempty"`
}

type wireAuthz struct {
	Identifier identifier      `json:"identifier"`
	Status     string          `json:"status"`
	Expires    string          `json:"expires"`
	Challenges []wireChallenge `json:"challenges"`
}

type wireChallenge struct {
	Type      string   `json:"type"`
	URL       string   `json:"url"`
	Status    string   `json:"status"`
	Token     string   `json:"token"`
	Validated string   `json:"validated,omitempty"`
	Error     *problem `json:"error,omitempty"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeOrder sends o; the caller holds s.mu.
func (s *Server) writeOrder(w http.ResponseWriter, base string, status int, o *order) {
	wo := wireOrder{
		Status:      s.st.orderStatus(o, s.now()),
		Expires:     stamp(o.Expires),
		Identifiers: o.Identifiers,
		Error:       o.Error,
		Finalize:    base + pathOrder + o.ID + "/finalize",
	}
	if o.NotBefore != nil {
		wo.NotBefore = stamp(*o.NotBefore)
	}
	if o.NotAfter != nil {
		wo.NotAfter = stamp(*o.NotAfter)
	}
	for _, a := range o.Authzs {
		wo.Authorizations = append(wo.Authorizations, base+pathAuthz+a)
	}
	if o.Cert != "" && wo.Status == statusValid {
		wo.Certificate = base + pathCert + o.Cert
	}
	if wo.Status == statusProcessing {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.Header().Set("Location", base+pathOrder+o.ID)
	writeJSON(w, status, wo)
}

func (s *Server) wireChallenge(base string, a *authz, c *challenge) wireChallenge {
	wc := wireChallenge{
		Type:   c.Type,
		URL:    base + pathChallenge + a.ID + "/" + c.Type,
		Status: c.Status,
		Token:  c.Token,
		Error:  c.Error,
	}
	if c.Validated != nil {
		wc.Validated = stamp(*c.Validated)
	}
	return wc
}

// writeAuthz sends a; the caller holds s.mu.
func (s *Server) writeAuthz(w http.ResponseWriter, base string, a *authz) {
	wa := wireAuthz{Identifier: a.Identifier, Status: a.status(s.now()), Expires: stamp(a.Expires)}
	for _, c := range a.Challenges {
		wa.Challenges = append(wa.Challenges, s.wireChallenge(base, a, c))
		if c.Status == statusProcessing && wa.Status == statusPending {
			w.Header().Set("Retry-After", retryAfterSeconds)
		}
	}
	writeJSON(w, http.StatusOK, wa)
}

// checkIdentifier validates and normalizes an order's identifier.
// It refuses what pol does not allow.
func (s *Server) checkIdentifier(pol *Policy, id identifier) (identifier, *problem) {
	switch id.Type {
	case "dns":
		name := strings.ToLower(id.Value)
		if strings.HasPrefix(name, "*.") {
			return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "wildcard %q needs dns-01, which this server does not offer", id.Value)
		}
		if net.ParseIP(name) != nil {
			return id, malformed("%q is an IP address; use an identifier of type ip", id.Value)
		}
		if !validDNSName(name) {
			return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "%q is not a valid DNS name", id.Value)
		}
		id.Value = name
	case "ip":
		a, err := netip.ParseAddr(id.Value)
		if err != nil || a.Zone() != "" {
			return id, malformed("%q is not an IP address", id.Value)
		}
		if a.Unmap().String() != id.Value {
			return id, malformed("IP address %q is not in canonical form (%s)", id.Value, a.Unmap())
		}
	default:
		return id, newProblem(http.StatusBadRequest, errUnsupportedIdentifier, "identifier type %q is not supported; use dns or ip", id.Type)
	}
	if err := pol.check(id); err != nil {
		return id, newProblem(http.StatusBadRequest, errRejectedIdentifier, "%s is not allowed: %v", id.Value, err)
	}
	return id, nil
}

// validDNSName reports whether name is a lower-case host name: labels of
// letters, digits and inner hyphens, 63 bytes at most, 253 in all.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// newOrder creates an order and its authorizations (RFC 8555 section
// 7.4), reusing the account's valid authorizations.
func (s *Server) newOrder(w http.ResponseWriter, base string, q *request) *problem {
	var p struct {
		Identifiers []identifier `json:"identifiers"`
		NotBefore   string       `json:"notBefore"`
		NotAfter    string       `json:"notAfter"`
	}
	if pr := q.decode(&p); pr != nil {
		return pr
	}
	if len(p.Identifiers) == 0 {
		return malformed("order has no identifiers")
	}
	if len(p.Identifiers) > maxIdentifiers {
		return newProblem(http.StatusBadRequest, errRejectedIdentifier, "at most %d identifiers per order", maxIdentifiers)
	}
	now := s.now()
	pol := s.policy()
	var ids []identifier
	var subs []*problem
	for _, id := range p.Identifiers {
		n, pr := s.checkIdentifier(pol, id)
		if pr != nil {
			pr.Identifier = &identifier{Type: id.Type, Value: id.Value}
			subs = append(subs, pr)
			continue
		}
		if !slices.Contains(ids, n) {
			ids = append(ids, n)
		}
	}
	switch {
	case len(subs) == 1:
		return subs[0]
	case len(subs) > 1:
		pr := newProblem(http.StatusBadRequest, errRejectedIdentifier, "%d identifiers refused", len(subs))
		pr.Subproblems = subs
		return pr
	}
	o := &order{ID: newID(), Account: q.acct.ID, Status: statusPending, Identifiers: ids, Created: now, Expires: now.Add(orderLifetime)}
	for _, f := range []struct {
		in  string
		out **time.Time
	}{{p.NotBefore, &o.NotBefore}, {p.NotAfter, &o.NotAfter}} {
		if f.in == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.in)
		if err != nil {
			return malformed("bad time %q: %v", f.in, err)
		}
		t = t.UTC()
		*f.out = &t
	}
	if o.NotBefore != nil && o.NotBefore.After(now.Add(time.Minute)) {
		return malformed("notBefore in the future is not supported")
	}
	if o.NotAfter != nil && !o.NotAfter.After(now.Add(time.Minute)) {
		return malformed("notAfter must be in the future")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var fresh []*authz
	for _, id := range ids {
		a := s.reusableAuthz(q.acct.ID, id, now)
		if a == nil {
			a = &authz{
				ID: newID(), Account: q.acct.ID, Identifier: id, Status: statusPending,
				Expires:    now.Add(pendingAuthzLife),
				Challenges: []*challenge{{Type: challengeHTTP01, Token: newToken(32), Status: statusPending}},
			}
			fresh = append(fresh, a)
		}
		o.Authzs = append(o.Authzs, a.ID)
		if a.Expires.Before(o.Expires) {
			o.Expires = a.Expires
		}
	}
	if pr := s.st.checkCaps(pol, q.acct.ID, len(fresh), now); pr != nil {
		return pr
	}
	for _, a := range fresh {
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			return internal("%v", err)
		}
	}
	if err := s.st.save(kindOrders, o.ID, o); err != nil {
		return internal("%v", err)
	}
	for _, a := range fresh {
		s.st.authzs[a.ID] = a
	}
	s.st.orders[o.ID] = o
	s.log.Info("order created", "account", o.Account, "order", o.ID, "identifiers", ids)
	s.writeOrder(w, base, http.StatusCreated, o)
	return nil
}

// reusableAuthz finds a valid authorization of the account for id that
// has a day left at least. The caller holds s.mu.
func (s *Server) reusableAuthz(acct string, id identifier, now time.Time) *authz {
	for _, a := range s.st.authzs {
		if a.Account == acct && a.Identifier == id && a.status(now) == statusValid && a.Expires.After(now.Add(24*time.Hour)) {
			return a
		}
	}
	return nil
}

// getOrder serves an order (POST-as-GET).
func (s *Server) getOrder(w http.ResponseWriter, base string, q *request, id string) *problem {
	if !q.postAsGet() {
		return malformed("expected POST-as-GET")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.st.orders[id]
	if o == nil || o.Account != q.acct.ID {
		return notFound("order")
	}
	s.writeOrder(w, base, http.StatusOK, o)
	return nil
}

// authorization serves or deactivates an authorization.
func (s *Server) authorization(w http.ResponseWriter, base string, q *request, id string) *problem {
	var p struct {
		Status string `json:"status"`
	}
	if !q.postAsGet() {
		if pr := q.decode(&p); pr != nil {
			return pr
		}
		if p.Status != statusDeactivated {
			return malformed("an authorization's status may only be set to %q", statusDeactivated)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.authzs[id]
	if a == nil || a.Account != q.acct.ID {
		return notFound("authorization")
	}
	if p.Status == statusDeactivated {
		if st := a.status(s.now()); st != statusPending && st != statusValid {
			return malformed("a %s authorization cannot be deactivated", st)
		}
		prev := a.Status
		a.Status = statusDeactivated
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			a.Status = prev
			return internal("%v", err)
		}
	}
	s.writeAuthz(w, base, a)
	return nil
}

// challenge serves a challenge (POST-as-GET) or, given a JSON object,
// starts its validation (RFC 8555 section 7.5.1), which goes on after the
// response: the challenge is processing, then valid or invalid.
func (s *Server) challenge(w http.ResponseWriter, base string, q *request, authzID string) *problem {
	start := !q.postAsGet()
	if start {
		var p map[string]any
		if pr := q.decode(&p); pr != nil {
			return pr
		}
	}
	pol := s.policy()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.authzs[authzID]
	if a == nil || a.Account != q.acct.ID || len(a.Challenges) == 0 {
		return notFound("challenge")
	}
	c := a.Challenges[0]
	if start && c.Status == statusPending && a.status(s.now()) == statusPending {
		if err := pol.check(a.Identifier); err != nil { // the policy changed since the order
			return newProblem(http.StatusBadRequest, errRejectedIdentifier, "%s is not allowed: %v", a.Identifier.Value, err)
		}
		if s.closed {
			return newProblem(http.StatusServiceUnavailable, errServerInternal, "server is shutting down")
		}
		c.Status = statusProcessing
		if err := s.st.save(kindAuthzs, a.ID, a); err != nil {
			c.Status = statusPending
			return internal("%v", err)
		}
		id, ident, token := a.ID, a.Identifier, c.Token
		keyAuth := token + "." + q.acct.Thumbprint
		s.wg.Add(1) // under s.mu with s.closed false, so before Close's Wait
		go func() {
			defer s.wg.Done()
			s.runValidation(id, ident, token, keyAuth)
		}()
		s.log.Info("validation started", "authz", a.ID, "identifier", a.Identifier.Value)
	}
	if c.Status == statusPending || c.Status == statusProcessing {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.Header().Add("Link", link(base+pathAuthz+a.ID, "up"))
	writeJSON(w, http.StatusOK, s.wireChallenge(base, a, c))
	return nil
}
