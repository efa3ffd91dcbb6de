package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Limits of the TCP service (the caps on connections are in tcp.go).
const (
	tcpIdle  = 10 * time.Second // the most a message may take to arrive, from the end of the last
	tcpWrite = 10 * time.Second // the most a reply may take to write
)

// stats counts what the server has answered.
type stats struct {
	queries  atomic.Uint64 // messages answered
	formerr  atomic.Uint64 // malformed messages
	refused  atomic.Uint64 // refused: no zone, or an update without a valid key
	dropped  atomic.Uint64 // messages not answered at all
	panicked atomic.Uint64 // handler panics caught (bugs)
	tcpShed  atomic.Uint64 // TCP connections closed or refused to make room

	rrlDropped atomic.Uint64 // UDP replies dropped by rate limiting
	rrlSlipped atomic.Uint64 // UDP replies sent truncated by rate limiting
	badcookie  atomic.Uint64 // UDP queries answered BADCOOKIE
}

// statsText is the text of /dns/stats.
// Queries is how many queries the server has answered or refused.
func (s *Server) Queries() uint64 { return uint64(s.stats.queries.Load()) }

func (s *Server) statsText(ctx context.Context) string {
	return fmt.Sprintf("queries %d\nformerr %d\nrefused %d\ndropped %d\npanics %d\ntcp %d\ntcpshed %d\nrrldropped %d\nrrlslipped %d\nbadcookie %d\n",
		s.stats.queries.Load(), s.stats.formerr.Load(), s.stats.refused.Load(),
		s.stats.dropped.Load(), s.stats.panicked.Load(), s.tcp.count(), s.stats.tcpShed.Load(),
		s.stats.rrlDropped.Load(), s.stats.rrlSlipped.Load(), s.stats.badcookie.Load())
}

// ListenAndServe answers queries on the UDP and TCP addresses (host:port;
// an empty address is not served) until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, udpAddr, tcpAddr string) error {
	var pc net.PacketConn
	var l net.Listener
	var lc net.ListenConfig
	if udpAddr != "" {
		c, err := lc.ListenPacket(ctx, "udp", udpAddr)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		pc = c
	}
	if tcpAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", tcpAddr)
		if err != nil {
			if pc != nil {
				pc.Close()
			}
			return fmt.Errorf("dns: %w", err)
		}
		l = ln
	}
	return s.Serve(ctx, pc, l)
}

// Serve answers queries arriving on pc (UDP) and l (TCP), either of which
// may be nil, until ctx is done or one of them fails. It closes both
// before it returns, and returns nil if ctx ended it.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if pc != nil {
			pc.Close()
		}
		if l != nil {
			l.Close()
		}
	})
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if pc != nil {
		wg.Go(func() { errc <- s.serveUDP(ctx, pc) })
	}
	if l != nil {
		wg.Go(func() { errc <- s.serveTCP(ctx, l) })
	}
	var err error
	if pc != nil || l != nil {
		select {
		case <-ctx.Done():
		case err = <-errc:
		}
	}
	cancel()
	wg.Wait()
	if pc != nil {
		pc.Close()
	}
	if l != nil {
		l.Close()
	}
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// serveUDP answers datagrams on pc with a reader per processor.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn) error {
	n := max(runtime.GOMAXPROCS(0), 2)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.udpWorker(ctx, pc) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

func (s *Server) udpWorker(ctx context.Context, pc net.PacketConn) error {
	buf := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, dns.MaxMsgSize)
	uc, _ := pc.(*net.UDPConn)
	if uc != nil {
		if ok, err := s.udpBatchWorker(ctx, uc); ok {
			return err
		}
	}
	for {
		var (
			n    int
			err  error
			addr net.Addr
		)
		if uc != nil {
			var a netip.AddrPort
			n, a, err = uc.ReadFromUDPAddrPort(buf)
			if err == nil {
				if resp := s.handle(buf[:n], false, a, out[:0]); resp != nil {
					uc.WriteToUDPAddrPort(resp, a)
				}
				continue
			}
		} else {
			n, addr, err = pc.ReadFrom(buf)
			if err == nil {
				from, _ := netip.ParseAddrPort(addr.String())
				if resp := s.handle(buf[:n], false, from, out[:0]); resp != nil {
					pc.WriteTo(resp, addr)
				}
				continue
			}
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return nil
		}
		// A transient error (such as ICMP news of an earlier reply):
		// go on, but not in a tight loop.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// serveTCP accepts connections on l, serving each in its own goroutine.
func (s *Server) serveTCP(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		var from netip.AddrPort
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			from = a.AddrPort()
		}
		tc := s.tcp.add(c, from.Addr())
		if tc == nil {
			continue
		}
		wg.Go(func() {
			defer s.tcp.remove(tc)
			s.serveConn(ctx, tc, from)
		})
	}
}

// serveConn answers the messages of one TCP connection in order. While
// it waits for a message the connection is idle, and may be closed to
// make room for another (see tcpConns).
func (s *Server) serveConn(ctx context.Context, tc *tcpConn, from netip.AddrPort) {
	c := tc.c
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var hdr [2]byte
	buf := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 2, 4096)
	for {
		if !s.tcp.setIdle(tc, true) {
			return
		}
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		if !s.tcp.setIdle(tc, false) {
			return
		}
		resp := s.handle(buf[:n], true, from, out[2:2])
		if resp == nil {
			continue
		}
		msg := append(out[:2], resp...)
		binary.BigEndian.PutUint16(msg, uint16(len(resp)))
		c.SetWriteDeadline(time.Now().Add(tcpWrite))
		if _, err := c.Write(msg); err != nil {
			return
		}
		if cap(msg) > cap(out) {
			out = msg[:2]
		}
	}
}
