package dns

import (
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// dohType is the media type of DNS messages over HTTPS.
const dohType = "application/dns-message"

// DoHHandler returns the RFC 8484 DNS-over-HTTPS handler: GET with the
// query in the dns parameter (base64url without padding), or POST with
// the query as the body (Content-Type application/dns-message). Replies
// are not truncated. A request that is not a DNS query gets 400 and the
// reason (415 for another content type, 413 for a body over 64 KiB, 405
// for another method).
func (s *Server) DoHHandler() http.Handler { return http.HandlerFunc(s.serveDoH) }

func (s *Server) serveDoH(w http.ResponseWriter, r *http.Request) {
	var msg []byte
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query().Get("dns")
		if q == "" {
			http.Error(w, "missing dns parameter", http.StatusBadRequest)
			return
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "="))
		if err != nil {
			http.Error(w, "dns parameter is not base64url: "+err.Error(), http.StatusBadRequest)
			return
		}
		msg = b
	case http.MethodPost:
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != dohType {
			http.Error(w, "content type must be "+dohType, http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dns.MaxMsgSize))
		if err != nil {
			http.Error(w, "body too large or unreadable: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		msg = b
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(msg) > dns.MaxMsgSize {
		http.Error(w, "message too large", http.StatusBadRequest)
		return
	}
	var m dns.Msg
	if err := m.Unpack(msg); err != nil {
		http.Error(w, "malformed DNS message: "+err.Error(), http.StatusBadRequest)
		return
	}
	if m.Response {
		http.Error(w, "not a DNS query: the QR bit is set", http.StatusBadRequest)
		return
	}
	from, _ := netip.ParseAddrPort(r.RemoteAddr)
	resp := s.handle(msg, true, from, nil)
	if resp == nil {
		http.Error(w, "no reply to this message", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", dohType)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	if ttl, ok := minTTL(resp); ok {
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d", ttl))
	}
	if r.Method != http.MethodHead {
		w.Write(resp)
	}
}

// minTTL returns the least TTL of the records of a reply (the SOA's for a
// negative one), for Cache-Control.
func minTTL(resp []byte) (uint32, bool) {
	var m dns.Msg
	if m.Unpack(resp) != nil || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return 0, false
	}
	ttl := uint32(math.MaxUint32)
	found := false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			ttl = min(ttl, rr.Header().Ttl)
			found = true
		}
	}
	return ttl, found
}
