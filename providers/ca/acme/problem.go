package acme

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Problem types (RFC 8555 section 6.7), less the prefix
// urn:ietf:params:acme:error:.
const (
	errAccountDoesNotExist     = "accountDoesNotExist"
	errAlreadyRevoked          = "alreadyRevoked"
	errBadCSR                  = "badCSR"
	errBadNonce                = "badNonce"
	errBadPublicKey            = "badPublicKey"
	errBadRevocationReason     = "badRevocationReason"
	errBadSignatureAlgorithm   = "badSignatureAlgorithm"
	errConnection              = "connection"
	errDNS                     = "dns"
	errIncorrectResponse       = "incorrectResponse"
	errInvalidContact          = "invalidContact"
	errMalformed               = "malformed"
	errOrderNotReady           = "orderNotReady"
	errRejectedIdentifier      = "rejectedIdentifier"
	errServerInternal          = "serverInternal"
	errUnauthorized            = "unauthorized"
	errUnsupportedContact      = "unsupportedContact"
	errUnsupportedIdentifier   = "unsupportedIdentifier"
	errExternalAccountRequired = "externalAccountRequired"
	errRateLimited             = "rateLimited"

	errPrefix = "urn:ietf:params:acme:error:"
)

// problem is an RFC 7807 problem document as ACME uses it. It is also how
// a challenge's or order's error is kept.
type problem struct {
	Type        string      `json:"type"`
	Detail      string      `json:"detail,omitempty"`
	Status      int         `json:"status,omitempty"`
	Identifier  *identifier `json:"identifier,omitempty"`
	Subproblems []*problem  `json:"subproblems,omitempty"`
	Algorithms  []string    `json:"algorithms,omitempty"` // badSignatureAlgorithm
}

func (p *problem) Error() string { return p.Type + ": " + p.Detail }

// newProblem makes a problem of ACME type typ (without prefix) and HTTP
// status.
func newProblem(status int, typ, format string, args ...any) *problem {
	return &problem{Type: errPrefix + typ, Detail: fmt.Sprintf(format, args...), Status: status}
}

func malformed(format string, args ...any) *problem {
	return newProblem(http.StatusBadRequest, errMalformed, format, args...)
}

func unauthorized(format string, args ...any) *problem {
	return newProblem(http.StatusForbidden, errUnauthorized, format, args...)
}

func notFound(what string) *problem {
	return newProblem(http.StatusNotFound, errMalformed, "no such %s", what)
}

func internal(format string, args ...any) *problem {
	return newProblem(http.StatusInternalServerError, errServerInternal, format, args...)
}

// rateLimited is a rateLimited problem (HTTP 429).
func rateLimited(format string, args ...any) *problem {
	return newProblem(http.StatusTooManyRequests, errRateLimited, format, args...)
}

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	b, err := json.Marshal(p)
	if err != nil {
		b = []byte(`{"type":"` + errPrefix + errServerInternal + `","status":500}`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", retryLimited)
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
}
