//go:build linux

package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpBatch is how many datagrams a worker reads (recvmmsg) and answers
// (sendmmsg) with one system call each.
const udpBatch = 32

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// udpBatchWorker answers the datagrams of uc a batch at a time. It
// returns false at once if the socket cannot be used so.
func (s *Server) udpBatchWorker(ctx context.Context, uc *net.UDPConn) (bool, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var (
		bufs  = make([]byte, udpBatch*dns.MaxMsgSize)
		outs  = make([]byte, udpBatch*dns.MaxMsgSize)
		names [udpBatch]unix.RawSockaddrAny
		riov  [udpBatch]unix.Iovec
		siov  [udpBatch]unix.Iovec
		rmsgs [udpBatch]mmsghdr
		smsgs [udpBatch]mmsghdr
	)
	for i := range udpBatch {
		riov[i].Base = &bufs[i*dns.MaxMsgSize]
		riov[i].SetLen(dns.MaxMsgSize)
		rmsgs[i].hdr.Iov = &riov[i]
		rmsgs[i].hdr.SetIovlen(1)
	}
	for {
		var n int
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			for i := range udpBatch {
				rmsgs[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
				rmsgs[i].hdr.Namelen = unix.SizeofSockaddrAny
				rmsgs[i].len = 0
			}
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&rmsgs[0])), udpBatch, 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			if e == unix.EINTR {
				return false
			}
			n, serr = int(r), nil
			if e != 0 {
				n, serr = 0, e
			}
			return true
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return true, nil
			}
			return true, err
		}
		if serr != nil {
			if serr == syscall.ENOTSUP || serr == syscall.ENOSYS {
				return false, nil
			}
			continue // ECONNREFUSED and the like: go on
		}
		k := 0
		for i := range n {
			req := bufs[i*dns.MaxMsgSize : i*dns.MaxMsgSize+int(rmsgs[i].len)]
			from := sockaddrAddrPort(&names[i], rmsgs[i].hdr.Namelen)
			out := outs[k*dns.MaxMsgSize : k*dns.MaxMsgSize : (k+1)*dns.MaxMsgSize]
			resp := s.handle(req, false, from, out)
			if resp == nil {
				continue
			}
			if len(resp) > 0 && &resp[0] != &outs[k*dns.MaxMsgSize] {
				copy(outs[k*dns.MaxMsgSize:], resp) // packed elsewhere (grown)
			}
			siov[k].Base = &outs[k*dns.MaxMsgSize]
			siov[k].SetLen(len(resp))
			smsgs[k].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&names[i])), Namelen: rmsgs[i].hdr.Namelen, Iov: &siov[k]}
			smsgs[k].hdr.SetIovlen(1)
			k++
		}
		for sent := 0; sent < k; {
			var werr error
			err := rc.Write(func(fd uintptr) bool {
				r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&smsgs[sent])), uintptr(k-sent), 0, 0, 0)
				if e == unix.EAGAIN || e == unix.EINTR {
					return false
				}
				if e != 0 {
					werr = e
					return true
				}
				sent += int(r)
				return true
			})
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return true, nil
				}
				return true, err
			}
			if werr != nil {
				sent++ // that reply cannot go (a bad address): skip it
			}
		}
	}
}

// sockaddrAddrPort decodes a socket address.
func sockaddrAddrPort(sa *unix.RawSockaddrAny, n uint32) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			break
		}
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			break
		}
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
