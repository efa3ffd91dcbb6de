package acme

import (
	"encoding/json"
	"net/http"
	"net/mail"
	"strings"
)

type wireAccount struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact,omitempty"`
	Orders  string   `json:"orders"`
}

func (s *Server) writeAccount(w http.ResponseWriter, base string, status int, a *account) {
	w.Header().Set("Location", base+pathAccount+a.ID)
	writeJSON(w, status, wireAccount{Status: a.Status, Contact: a.Contact, Orders: base + pathAccount + a.ID + "/orders"})
}

// checkContacts accepts up to maxContacts mailto: URLs of one address each.
func checkContacts(cs []string) *problem {
	if len(cs) > maxContacts {
		return newProblem(http.StatusBadRequest, errInvalidContact, "at most %d contacts", maxContacts)
	}
	for _, c := range cs {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return newProblem(http.StatusBadRequest, errUnsupportedContact, "contact %q: only mailto: is supported", c)
		}
		if strings.ContainsAny(addr, "?,") {
			return newProblem(http.StatusBadRequest, errInvalidContact, "contact %q: one address, no header fields", c)
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || a.Name != "" {
			return newProblem(http.StatusBadRequest, errInvalidContact, "contact %q is not an email address", c)
		}
	}
	return nil
}

// newAccount creates an account for the request's key or finds the one it
// has (RFC 8555 section 7.3).
func (s *Server) newAccount(w http.ResponseWriter, base string, q *request) *problem {
	var p struct {
		Contact                []string        `json:"contact"`
		TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
		ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
	}
	if pr := q.decode(&p); pr != nil {
		return pr
	}
	tp, err := thumbprint(q.key)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadPublicKey, "%v", err)
	}
	pol := s.policy()
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.st.byKey[tp]; ok {
		a := s.st.accounts[id]
		if a.Status != statusValid {
			return unauthorized("account is %s", a.Status)
		}
		if !pol.admits(a) {
			return unauthorized("account is no longer admitted by this server's owner")
		}
		s.writeAccount(w, base, http.StatusOK, a)
		return nil
	}
	if p.OnlyReturnExisting {
		return newProblem(http.StatusBadRequest, errAccountDoesNotExist, "no account for this key")
	}
	if pr := checkContacts(p.Contact); pr != nil {
		return pr
	}
	jwk, err := encodeJWK(q.key)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadPublicKey, "%v", err)
	}
	via, pr := pol.admit(tp, jwk, p.ExternalAccountBinding, q.url, func(kid string) bool {
		_, ok := s.st.byEAB[kid]
		return ok
	})
	if pr != nil {
		return pr
	}
	a := &account{
		ID: newID(), Key: jwk, Thumbprint: tp, Contact: p.Contact,
		Status: statusValid, Created: s.now(), Via: via, pub: q.key,
	}
	if err := s.st.save(kindAccounts, a.ID, a); err != nil {
		return internal("%v", err)
	}
	s.st.accounts[a.ID] = a
	s.st.byKey[tp] = a.ID
	if kid, ok := strings.CutPrefix(via, viaEAB); ok {
		s.st.byEAB[kid] = a.ID
	}
	s.log.Info("account created", "account", a.ID, "contact", a.Contact, "via", via)
	s.writeAccount(w, base, http.StatusCreated, a)
	return nil
}

// account serves, updates or deactivates the account id (RFC 8555
// sections 7.3.2 and 7.3.6).
func (s *Server) account(w http.ResponseWriter, base string, q *request, id string) *problem {
	if q.acct.ID != id {
		return unauthorized("account URL does not match kid")
	}
	var p struct {
		Contact *[]string `json:"contact"`
		Status  string    `json:"status"`
	}
	if !q.postAsGet() {
		if pr := q.decode(&p); pr != nil {
			return pr
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.accounts[id]
	if a.Status != statusValid {
		return unauthorized("account is %s", a.Status)
	}
	next := *a
	switch p.Status {
	case "":
	case statusDeactivated:
		next.Status = statusDeactivated
	default:
		return malformed("an account's status may only be set to %q", statusDeactivated)
	}
	if p.Contact != nil {
		if pr := checkContacts(*p.Contact); pr != nil {
			return pr
		}
		next.Contact = *p.Contact
	}
	if !q.postAsGet() {
		if err := s.st.save(kindAccounts, id, &next); err != nil {
			return internal("%v", err)
		}
		a = &next
		s.st.accounts[id] = a
		if a.Status == statusDeactivated {
			s.log.Info("account deactivated", "account", id)
		}
	}
	s.writeAccount(w, base, http.StatusOK, a)
	return nil
}

// accountOrders lists the URLs of the account's orders that have not
// expired, or are valid.
func (s *Server) accountOrders(w http.ResponseWriter, base string, q *request, id string) *problem {
	if q.acct.ID != id {
		return unauthorized("orders of another account")
	}
	if !q.postAsGet() {
		return malformed("expected POST-as-GET")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	urls := []string{}
	for _, o := range s.st.orders {
		if o.Account == id && (o.Status == statusValid || now.Before(o.Expires)) {
			urls = append(urls, base+pathOrder+o.ID)
		}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"orders": urls})
	return nil
}

// keyChange replaces an account's key (RFC 8555 section 7.3.5). The
// payload is a JWS signed by the new key, naming the account and its old
// key.
func (s *Server) keyChange(w http.ResponseWriter, base string, q *request) *problem {
	inner, err := parseJWS(q.payload)
	if err != nil {
		return malformed("inner JWS: %v", err)
	}
	if inner.hasNonce {
		return malformed("inner JWS must not have a nonce")
	}
	in, pr := s.checkJWS(inner, q.url, keyJWK)
	if pr != nil {
		pr.Detail = "inner JWS: " + pr.Detail
		return pr
	}
	var p struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if pr := in.decode(&p); pr != nil {
		return pr
	}
	if p.Account != base+pathAccount+q.acct.ID {
		return unauthorized("inner JWS names account %q, not the signer's", p.Account)
	}
	old, err := parseJWK(p.OldKey)
	if err != nil {
		return malformed("oldKey: %v", err)
	}
	oldTP, err := thumbprint(old)
	if err != nil || oldTP != q.acct.Thumbprint {
		return unauthorized("oldKey is not the account's key")
	}
	newTP, err := thumbprint(in.key)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadPublicKey, "%v", err)
	}
	jwk, err := encodeJWK(in.key)
	if err != nil {
		return newProblem(http.StatusBadRequest, errBadPublicKey, "%v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.st.byKey[newTP]; ok {
		w.Header().Set("Location", base+pathAccount+other)
		return newProblem(http.StatusConflict, errMalformed, "the new key belongs to an account already")
	}
	a := s.st.accounts[q.acct.ID]
	if a.Thumbprint != oldTP {
		return unauthorized("account key changed meanwhile")
	}
	next := *a
	next.Key, next.Thumbprint, next.pub = jwk, newTP, in.key
	if err := s.st.save(kindAccounts, a.ID, &next); err != nil {
		return internal("%v", err)
	}
	delete(s.st.byKey, oldTP)
	s.st.byKey[newTP] = a.ID
	a = &next
	s.st.accounts[a.ID] = a
	s.log.Info("account key changed", "account", a.ID)
	s.writeAccount(w, base, http.StatusOK, a)
	return nil
}
