package dns

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Response rate limiting, after BIND's (and the ISC design it came
// from): UDP replies are counted in accounts, and an account over its
// rate loses replies, so the server cannot be used to flood a victim
// whose address is forged on queries. An account is a client's network
// (IPv4 /24, IPv6 /56) and the kind of reply: for answers, referrals and
// NODATA the name and type asked (so a victim is sent each reply at most
// Rate times a second, however many resolvers share its network and ask
// other names); for NXDOMAIN one account per network (random names all
// count together); for errors (REFUSED, FORMERR, SERVFAIL...) another.
//
// Each account earns Rate credits a second, holds at most Rate and owes
// at most Rate×Window; a reply costs one. A reply without credit is
// dropped, except that every Slip-th is sent truncated (TC=1, no
// records): small as the query, and a real client asks again over TCP,
// which is never limited, nor is a query with a valid server cookie.

// RRL configures response rate limiting. The zero RRL is off.
type RRL struct {
	Rate   int // replies a second per account; 0: no limit
	Slip   int // every Slip-th reply over the rate is sent truncated; 0: none
	Window int // seconds of debt an account may run up (default 15)
}

// Defaults of the module's rrl line.
const (
	DefaultRRLRate   = 20
	DefaultRRLSlip   = 2
	DefaultRRLWindow = 15
)

const (
	rrlShards     = 64
	rrlMaxEntries = 1 << 17 // accounts kept; more are dropped, oldest first
)

// rrlKind is the kind of reply an account counts.
type rrlKind byte

const (
	rrlAnswer rrlKind = iota // answers, referrals, NODATA: by name and type
	rrlNXDomain
	rrlError
)

// rrl is the state of response rate limiting.
type rrl struct {
	cfg    RRL
	seed   maphash.Seed
	shards [rrlShards]rrlShard
}

type rrlShard struct {
	mu sync.Mutex
	m  map[uint64]*rrlAccount // guarded by mu
}

type rrlAccount struct {
	balance float64 // credits
	last    int64   // unix nanoseconds of the last reply
	drops   int     // replies refused since the last slip
}

func newRRL(cfg RRL) *rrl {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultRRLWindow
	}
	r := &rrl{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]*rrlAccount)
	}
	return r
}

// Verdicts of rrl.check.
const (
	rrlSend = iota // send the reply
	rrlSlip        // send it truncated
	rrlDrop        // send nothing
)

// check charges the reply resp, to a client at from, to its account,
// at time now, and says what to do with it.
func (r *rrl) check(resp []byte, from netip.Addr, now time.Time) int {
	if len(resp) < 12 {
		return rrlSend
	}
	from = from.Unmap()
	var p netip.Prefix
	if from.Is4() {
		p, _ = from.Prefix(24)
	} else {
		p, _ = from.Prefix(56)
	}
	// The key: network, kind, and for answers the question's name
	// (without case) and type.
	var kb [16 + 1 + 255 + 2]byte
	a := p.Addr().As16()
	k := append(kb[:0], a[:]...)
	kind := rrlAnswer
	switch resp[3] & 0xf {
	case 0: // NOERROR
	case 3:
		kind = rrlNXDomain
	default:
		kind = rrlError
	}
	k = append(k, byte(kind))
	if kind == rrlAnswer {
		off := 12
		for off < len(resp) && len(k) < len(kb)-2 {
			l := int(resp[off])
			if l == 0 || l&0xc0 != 0 || off+1+l > len(resp) || len(k)+1+l > len(kb)-2 {
				break
			}
			for _, c := range resp[off : off+1+l] {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				k = append(k, c)
			}
			off += 1 + l
		}
		if off+3 <= len(resp) {
			k = append(k, resp[off+1:off+3]...)
		}
	}
	key := maphash.Bytes(r.seed, k)
	sh := &r.shards[key%rrlShards]
	ns := now.UnixNano()
	rate := float64(r.cfg.Rate)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	acct := sh.m[key]
	if acct == nil {
		if len(sh.m) >= rrlMaxEntries/rrlShards {
			r.pruneLocked(sh, ns)
		}
		acct = &rrlAccount{balance: rate, last: ns}
		sh.m[key] = acct
	}
	if d := ns - acct.last; d > 0 {
		acct.balance = min(rate, acct.balance+rate*float64(d)/1e9)
		acct.last = ns
	}
	acct.balance = max(acct.balance-1, -rate*float64(r.cfg.Window))
	if acct.balance >= 0 {
		acct.drops = 0
		return rrlSend
	}
	acct.drops++
	if r.cfg.Slip > 0 && acct.drops >= r.cfg.Slip {
		acct.drops = 0
		return rrlSlip
	}
	return rrlDrop
}

// pruneLocked drops the accounts of sh that are back to full credit,
// or, if none is, all of them. sh.mu is held.
func (r *rrl) pruneLocked(sh *rrlShard, now int64) {
	full := int64(r.cfg.Window) * int64(time.Second)
	for k, a := range sh.m {
		if now-a.last > full {
			delete(sh.m, k)
		}
	}
	if len(sh.m) >= rrlMaxEntries/rrlShards {
		clear(sh.m)
	}
}

// truncated rewrites resp, in place, as the truncated reply sent for a
// slip: its header and question, TC set, no records. It returns nil if
// resp does not have a question to keep.
func truncated(resp []byte) []byte {
	if len(resp) < 12 {
		return nil
	}
	end := 12
	if binary.BigEndian.Uint16(resp[4:]) == 1 {
		for end < len(resp) {
			l := int(resp[end])
			if l == 0 {
				end++
				break
			}
			if l&0xc0 != 0 {
				return nil
			}
			end += 1 + l
		}
		end += 4
		if end > len(resp) {
			return nil
		}
	} else {
		binary.BigEndian.PutUint16(resp[4:], 0)
	}
	resp[2] |= 0x02 // TC
	clear(resp[6:12])
	return resp[:end]
}
