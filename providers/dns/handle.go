package dns

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// handle answers req, one DNS message from from (tcp tells the
// transport: TCP or HTTPS, whose source address is not forged). It
// returns the reply, packed in buf's space when that is enough, or nil if
// nothing is to be sent. A UDP reply goes through response rate limiting
// (rrl.go) unless the query had a good server cookie. It never panics: a
// panic is counted, logged and the message dropped.
func (s *Server) handle(req []byte, tcp bool, from netip.AddrPort, buf []byte) (resp []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.panicked.Add(1)
			s.log.Error("dns: panic answering a message", "panic", r, "from", from)
			resp = nil
		}
	}()
	now := s.now()
	resp, verified := s.respond(req, tcp, from, buf, now)
	rl := s.rrlp.Load()
	if resp == nil || tcp || verified || rl == nil {
		return resp
	}
	switch rl.check(resp, from.Addr(), now) {
	case rrlSlip:
		s.stats.rrlSlipped.Add(1)
		return truncated(resp)
	case rrlDrop:
		s.stats.rrlDropped.Add(1)
		return nil
	}
	return resp
}

// respond is handle without rate limiting, at time now. It reports
// whether the query had a good server cookie.
func (s *Server) respond(req []byte, tcp bool, from netip.AddrPort, buf []byte, now time.Time) ([]byte, bool) {
	sv := s.zones.Load()
	var kb [264]byte
	key, size, quick := quickKey(req, kb[:0])
	quick = quick && !s.nocache
	if quick {
		if r := sv.cache.get(key, now.Unix()); r != nil {
			limit := dns.MaxMsgSize
			if !tcp {
				limit = dns.MinMsgSize
				if key[len(key)-1] != 0 { // EDNS
					limit = min(max(size, dns.MinMsgSize), s.opts.UDPSize)
				}
			}
			if len(r) <= limit {
				s.stats.queries.Add(1)
				out := append(buf[:0], r...)
				out[0], out[1] = req[0], req[1]
				out[2] = out[2]&^0x01 | req[2]&0x01 // RD
				out[3] = out[3]&^0x10 | req[3]&0x10 // CD
				return out, false
			}
		}
	}
	out, complete, verified := s.answerMsg(sv, req, tcp, from, buf)
	if quick && complete {
		sv.cache.put(key, out, now.Unix())
	}
	return out, verified
}

// answerMsg answers req from sv without the cache. It reports whether
// the reply may be cached (a query answered in full) and whether the
// query had a good server cookie.
func (s *Server) answerMsg(sv *served, req []byte, tcp bool, from netip.AddrPort, buf []byte) ([]byte, bool, bool) {
	if len(req) < 12 || req[2]&0x80 != 0 {
		// Too short to answer, or a response: answering could loop.
		s.stats.dropped.Add(1)
		return nil, false, false
	}
	var m dns.Msg
	if err := m.Unpack(req); err != nil {
		s.stats.formerr.Add(1)
		return headerReply(req, dns.RcodeFormatError, buf), false, false
	}
	return s.answerParsed(sv, req, &m, tcp, from, buf)
}

// answerParsed is answerMsg once req has been parsed as m.
func (s *Server) answerParsed(sv *served, req []byte, m *dns.Msg, tcp bool, from netip.AddrPort, buf []byte) ([]byte, bool, bool) {
	s.stats.queries.Add(1)
	r := &dns.Msg{MsgHdr: dns.MsgHdr{Id: m.Id, Response: true, Opcode: m.Opcode,
		RecursionDesired: m.RecursionDesired, CheckingDisabled: m.CheckingDisabled}}
	r.Question = m.Question
	limit := dns.MinMsgSize
	if tcp {
		limit = dns.MaxMsgSize
	}
	var opt *dns.OPT
	for _, rr := range m.Extra {
		o, ok := rr.(*dns.OPT)
		if !ok {
			continue
		}
		if opt != nil || o.Hdr.Name != "." {
			s.stats.formerr.Add(1)
			return headerReply(req, dns.RcodeFormatError, buf), false, false
		}
		opt = o
	}
	do, verified := false, false
	if opt != nil {
		ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ro.SetUDPSize(uint16(s.opts.UDPSize))
		if opt.Do() {
			ro.SetDo()
			do = true
		}
		r.Extra = append(r.Extra, ro)
		if !tcp {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.opts.UDPSize)
		}
		if opt.Version() != 0 {
			r.Rcode = dns.RcodeBadVers
			r.Question = nil
			return s.pack(r, limit, buf), false, false
		}
		c, state := s.checkCookie(opt, from.Addr())
		switch state {
		case cookieMalformed:
			s.stats.formerr.Add(1)
			r.Rcode = dns.RcodeFormatError
			r.Question = nil
			return s.pack(r, limit, buf), false, false
		case cookieBad:
			if !tcp {
				s.stats.badcookie.Add(1)
				r.Rcode = dns.RcodeBadCookie
				ro.Option = append(ro.Option, c)
				return s.pack(r, limit, buf), false, false
			}
		case cookieGood:
			verified = true
		}
		if c != nil {
			ro.Option = append(ro.Option, c)
		}
	}
	if len(m.Question) != 1 {
		s.stats.formerr.Add(1)
		r.Rcode = dns.RcodeFormatError
		r.Question = nil
		return s.pack(r, limit, buf), false, verified
	}
	switch m.Opcode {
	case dns.OpcodeQuery:
		out, cache := s.query(sv, req, m, r, do, limit, buf)
		return out, cache, verified
	case dns.OpcodeUpdate:
		return s.update(req, m, r, from, buf), false, verified
	}
	r.Rcode = dns.RcodeNotImplemented
	return s.pack(r, limit, buf), false, verified
}

// query answers the query m with r.
// The reply may be cached if it is complete and the query was not signed.
func (s *Server) query(sv *served, req []byte, m, r *dns.Msg, do bool, limit int, buf []byte) ([]byte, bool) {
	q := m.Question[0]
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		r.Rcode = dns.RcodeRefused
		s.stats.refused.Add(1)
		return s.pack(r, limit, buf), false
	case q.Qtype == dns.TypeOPT || q.Qtype == dns.TypeTSIG || q.Qtype == dns.TypeTKEY:
		r.Rcode = dns.RcodeFormatError
		s.stats.formerr.Add(1)
		return s.pack(r, limit, buf), false
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR || q.Qtype == dns.TypeMAILA || q.Qtype == dns.TypeMAILB:
		r.Rcode = dns.RcodeRefused
		s.stats.refused.Add(1)
		return s.pack(r, limit, buf), false
	}
	qname := canon(q.Name)
	z := sv.zones.findZone(qname)
	if z != nil && q.Qtype == dns.TypeDS && qname == z.origin {
		// The DS of a zone is the parent's, if the parent is served too.
		if p := parentName(qname); p != "" {
			if pz := sv.zones.findZone(p); pz != nil {
				z = pz
			}
		}
	}
	if z == nil {
		r.Rcode = dns.RcodeRefused
		s.stats.refused.Add(1)
		return s.packFull(r, limit, buf)
	}
	if t := m.IsTsig(); t != nil {
		key, terr := s.checkTSIG(req, t, z)
		if terr != 0 {
			r.Rcode = dns.RcodeNotAuth
			s.zlogf(s.metaOf(z.origin), z.origin, "query %s %s with TSIG key %s refused: %s",
				q.Name, dns.TypeToString[q.Qtype], t.Hdr.Name, dns.RcodeToString[int(terr)])
			return s.packTSIG(r, key, t, terr, buf), false
		}
		answerQuery(z, q, do, s.now(), r)
		return s.packTSIG(r, key, t, 0, buf), false
	}
	answerQuery(z, q, do, s.now(), r)
	return s.packFull(r, limit, buf)
}

// packFull is pack, reporting whether the reply went out whole.
func (s *Server) packFull(r *dns.Msg, limit int, buf []byte) ([]byte, bool) {
	r.Compress = true
	out, err := r.PackBuffer(buf)
	if err == nil && len(out) <= limit {
		return out, true
	}
	return s.pack(r, limit, buf), false
}

// pack packs r into buf's space. A reply longer than limit loses its
// additional records, then, if still too long, its answer and authority
// sections, and has TC set. A reply that does not pack is SERVFAIL.
func (s *Server) pack(r *dns.Msg, limit int, buf []byte) []byte {
	r.Compress = true
	out, err := r.PackBuffer(buf)
	if err != nil {
		return s.servfail(r, buf, err)
	}
	if len(out) <= limit {
		return out
	}
	extra := r.Extra[:0:0]
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	if len(extra) < len(r.Extra) {
		r.Extra = extra
		if out, err = r.PackBuffer(buf); err == nil && len(out) <= limit {
			return out
		}
	}
	r.Answer, r.Ns, r.Truncated = nil, nil, true
	out, err = r.PackBuffer(buf)
	if err != nil {
		return s.servfail(r, buf, err)
	}
	return out
}

// servfail makes r a SERVFAIL without records, logging why.
func (s *Server) servfail(r *dns.Msg, buf []byte, err error) []byte {
	s.log.Error("dns: cannot pack reply", "err", err)
	r.Rcode = dns.RcodeServerFailure
	r.Answer, r.Ns, r.Extra = nil, nil, nil
	out, err := r.PackBuffer(buf)
	if err != nil {
		return nil
	}
	return out
}

// headerReply is a reply of only a header with rcode to the message req,
// which could not be parsed (at least 12 bytes of it are there).
func headerReply(req []byte, rcode int, buf []byte) []byte {
	out := append(buf[:0], make([]byte, 12)...)
	copy(out, req[:2])
	out[2] = 0x80 | req[2]&0x79 // QR, the opcode and RD of the request
	out[3] = byte(rcode & 0xf)
	return out
}

// checkTSIG verifies t, the TSIG of req, against the keys of z. It
// returns the key and 0, or a TSIG error (BADKEY, BADSIG, BADTIME).
func (s *Server) checkTSIG(req []byte, t *dns.TSIG, z *zone) (tsigKey, uint16) {
	name := canon(t.Hdr.Name)
	key, ok := z.conf.tsig[name]
	if !ok || key.algorithm != canon(t.Algorithm) {
		return tsigKey{name: name, algorithm: canon(t.Algorithm)}, dns.RcodeBadKey
	}
	// TsigVerify checks the time against the system clock after the
	// MAC; the time is checked again here against the server's clock.
	// It also writes over its argument (the ID with the Original ID,
	// the additional count): it gets a copy, so that the request, which
	// the reply and the caller still read, stays as it came.
	if err := dns.TsigVerify(bytes.Clone(req), key.secret, "", false); err != nil && err != dns.ErrTime {
		return key, dns.RcodeBadSig
	}
	now := s.now().Unix()
	d := now - int64(t.TimeSigned)
	if d < 0 {
		d = -d
	}
	if d > int64(t.Fudge) {
		return key, dns.RcodeBadTime
	}
	return key, 0
}

// packTSIG packs r signed with key in reply to a request signed with
// req; a tsigErr of BADKEY or BADSIG leaves it unsigned, as RFC 8945
// says.
func (s *Server) packTSIG(r *dns.Msg, key tsigKey, req *dns.TSIG, tsigErr uint16, buf []byte) []byte {
	r.SetTsig(key.name, key.algorithm, 300, s.now().Unix())
	t := r.Extra[len(r.Extra)-1].(*dns.TSIG)
	t.Error = tsigErr
	// The reply's Original ID is its own ID, the request's, whatever
	// the request's TSIG says (TsigGenerate writes it over the ID).
	t.OrigId = r.Id
	mac := req.MAC
	if tsigErr == dns.RcodeBadKey || tsigErr == dns.RcodeBadSig {
		mac = ""
	}
	out, _, err := dns.TsigGenerate(r, key.secret, mac, false)
	if err != nil {
		s.log.Error("dns: cannot sign reply", "err", err)
		return nil
	}
	return out
}
