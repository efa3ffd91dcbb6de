package bench

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"slices"

	"cheshire/styx"
)

// StartCanned starts the floor of a 9P server for the small operation:
// on each connection one goroutine reads a frame and writes its reply,
// made up on the spot with nothing behind it (a walk to any names
// succeeds, a read at offset 0 returns SmallSize bytes of Pattern, every
// fid is forgotten). It is the least any server can do for a client's
// walk, open, read and clunk, with a read and a write syscall per
// request, as the echo server is for bare round trips: a client's cost
// above this is its own.
func StartCanned(smallSize int) (*Server, error) {
	l, err := listen()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: "canned", Addr: l.Addr().String(), l: l}
	data := Pattern(int64(smallSize))
	s.acceptLoop(func(nc net.Conn) { serveCanned(nc, data) })
	return s, nil
}

func serveCanned(nc net.Conn, data []byte) {
	br := bufio.NewReaderSize(nc, 64<<10)
	var in, out []byte
	var tx, rx styx.Fcall
	qid := styx.Qid{Path: 1}
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		size := binary.LittleEndian.Uint32(hdr[:])
		if size < 7 || size > 1<<20 {
			return
		}
		in = slices.Grow(in[:0], int(size))[:size]
		copy(in, hdr[:])
		if _, err := io.ReadFull(br, in[4:]); err != nil {
			return
		}
		if err := tx.Unmarshal(in); err != nil {
			return
		}
		rx = styx.Fcall{Type: tx.Type + 1, Tag: tx.Tag}
		switch tx.Type {
		case styx.Tversion:
			rx.Msize, rx.Version = min(tx.Msize, 1<<20), "9P2000"
		case styx.Tattach:
			rx.Qid = styx.Qid{Type: styx.QTDIR}
		case styx.Twalk:
			for range tx.Wname {
				rx.Wqid = append(rx.Wqid, qid)
			}
		case styx.Topen:
			rx.Qid = qid
		case styx.Tread:
			if tx.Offset < uint64(len(data)) {
				rx.Data = data[tx.Offset:min(uint64(len(data)), tx.Offset+uint64(tx.Count))]
			}
		case styx.Tclunk:
		default:
			rx = styx.Fcall{Type: styx.Rerror, Tag: tx.Tag, Ename: "not in the canned server"}
		}
		var err error
		if out, err = rx.Append(out[:0]); err != nil {
			return
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}
