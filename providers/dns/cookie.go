package dns

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// DNS cookies (RFC 7873), with server cookies in the layout of RFC 9018:
// version 1, three reserved bytes, the time it was made (unix seconds,
// 32 bits) and 8 bytes of HMAC-SHA-256 over the client cookie, those
// fields and the client's address, keyed with a secret made at start
// (RFC 9018 says SipHash-2-4; only this server checks its cookies, and
// the standard library has HMAC). A cookie is good for an hour (and five
// minutes of clock skew); every reply to a query with a cookie carries a
// fresh one.
//
// A query with only a client cookie, or with a bad server cookie over
// TCP, is answered as usual, with a server cookie. A UDP query whose
// server cookie is wrong or old gets BADCOOKIE and a new one, and no
// answer: the client asks again with it. A query with a good server
// cookie comes from the address it claims, and is not rate limited.
// A COOKIE option of a bad length is FORMERR.

const (
	cookieClientLen = 8
	cookieServerLen = 16 // this server's; a client may send 8 to 32
	cookieLife      = time.Hour
	cookieSkew      = 5 * time.Minute
)

// cookieState is what a query's COOKIE option says.
type cookieState int

const (
	cookieNone      cookieState = iota // no option
	cookieClient                       // a client cookie alone
	cookieGood                         // a client cookie and our good server cookie
	cookieBad                          // a server cookie that is not ours, or too old
	cookieMalformed                    // an option of a bad length
)

// serverCookie computes the server cookie for client cookie cc from
// addr, made at time t.
func (s *Server) serverCookie(cc []byte, addr netip.Addr, t uint32) []byte {
	out := make([]byte, 8, cookieServerLen)
	out[0] = 1 // version
	binary.BigEndian.PutUint32(out[4:], t)
	mac := hmac.New(sha256.New, s.cookieSecret[:])
	mac.Write(cc)
	mac.Write(out)
	a := addr.Unmap().AsSlice()
	mac.Write(a)
	return mac.Sum(out)[:cookieServerLen]
}

// checkCookie looks at the COOKIE option of opt, from addr. It returns
// the option for the reply (nil if none is due) and the state.
func (s *Server) checkCookie(opt *dns.OPT, addr netip.Addr) (*dns.EDNS0_COOKIE, cookieState) {
	var c *dns.EDNS0_COOKIE
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_COOKIE); ok {
			if c != nil {
				return nil, cookieMalformed
			}
			c = e
		}
	}
	if c == nil {
		return nil, cookieNone
	}
	raw, err := hex.DecodeString(c.Cookie)
	if err != nil || len(raw) < cookieClientLen || (len(raw) > cookieClientLen && (len(raw) < 16 || len(raw) > 40)) {
		return nil, cookieMalformed
	}
	cc, sc := raw[:cookieClientLen], raw[cookieClientLen:]
	now := s.now()
	reply := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE,
		Cookie: hex.EncodeToString(append(cc[:cookieClientLen:cookieClientLen], s.serverCookie(cc, addr, uint32(now.Unix()))...))}
	if len(sc) == 0 {
		return reply, cookieClient
	}
	if len(sc) != cookieServerLen || sc[0] != 1 {
		return reply, cookieBad
	}
	made := time.Unix(int64(binary.BigEndian.Uint32(sc[4:])), 0)
	if made.Before(now.Add(-cookieLife)) || made.After(now.Add(cookieSkew)) {
		return reply, cookieBad
	}
	if !hmac.Equal(sc, s.serverCookie(cc, addr, binary.BigEndian.Uint32(sc[4:]))) {
		return reply, cookieBad
	}
	return reply, cookieGood
}
