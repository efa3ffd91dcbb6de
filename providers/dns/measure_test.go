package dns

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/miekg/dns"
)

// Measurements for the README and reports, not checks: they run only
// with MEASURE=1 and log what they see.

// TestMeasureTCPFlood holds 1,000 idle TCP connections from 63 loopback
// addresses (16 each), renewing 16 between queries, and counts how many
// of 60 TCP queries from 127.0.0.1 are answered.
//
//	MEASURE=1 go test -run TestMeasureTCPFlood -v ./providers/dns
func TestMeasureTCPFlood(t *testing.T) {
	if os.Getenv("MEASURE") == "" {
		t.Skip()
	}
	ts := serverWith(t, Options{})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 1000 {
		held = append(held, dialFrom(t, net.IPv4(127, 0, 1, byte(1+i/16)).String(), ts.addr))
	}
	testutil.WaitFor(t, "accepted", func() bool { return ts.stats.tcpShed.Load() >= 488 })
	start := time.Now()
	ok := 0
	for range 60 {
		if tcpQuery(ts) == nil {
			ok++
		}
		// renew 16 of the held connections between queries
		for j := range 16 {
			k := (ok*16 + j) % len(held)
			held[k].Close()
			held[k] = dialFrom(t, net.IPv4(127, 0, 1, byte(1+k/16)).String(), ts.addr)
		}
	}
	t.Logf("%d of 60 answered in %v with 1000 idle connections held from 63 addresses and renewed; open %d, shed %d", ok, time.Since(start), ts.tcp.count(), ts.stats.tcpShed.Load())
}

// TestMeasureAmplification sends 500 queries from one address for a
// name with 12 TXT records, without and with the module's default rate
// limiting, and compares the bytes sent and received.
//
//	MEASURE=1 go test -run TestMeasureAmplification -v ./providers/dns
func TestMeasureAmplification(t *testing.T) {
	if os.Getenv("MEASURE") == "" {
		t.Skip()
	}
	for _, cfg := range []RRL{{}, {Rate: DefaultRRLRate, Slip: DefaultRRLSlip}} {
		ts := serverWith(t, Options{RRL: cfg})
		var b []string
		for i := range 12 {
			b = append(b, "add big 300 TXT '\"record "+string(rune('a'+i))+" with some text to make the answer large, as an attacker would choose\"'")
		}
		ts.ctl("zones/example.test/ctl", strings.Join(b, "\n"))
		c := udpFrom(t, "127.0.0.2")
		q := new(dns.Msg)
		q.SetQuestion("big.example.test.", dns.TypeTXT)
		q.SetEdns0(4096, false)
		in, out, replies := 0, 0, 0
		buf := make([]byte, 65535)
		for i := range 500 {
			q.Id = uint16(i)
			in += send(t, c, ts.addr, q)
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				out += n
				replies++
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
			}
		}
		t.Logf("rrl %+v: 500 queries, %d bytes in, %d replies, %d bytes out: %.1fx", cfg, in, replies, out, float64(out)/float64(in))
	}
}
