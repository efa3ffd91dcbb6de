// Tread and Twrite: file data, and directory reads packed by the engine
// from one ReadDir snapshot taken at offset 0.

package styx

import (
	"encoding/binary"
	"errors"
	"io"
	"net"

	"cheshire/plan9"
)

func readable(mode uint8) bool { m := mode & 3; return m == OREAD || m == ORDWR || m == OEXEC }

func writable(mode uint8) bool { m := mode & 3; return m == OWRITE || m == ORDWR }

// openedFid returns r's fid, held for r, and its file, if the fid is
// open with a mode that may do what r asks; else it replies with the
// error and returns a nil file.
func (c *conn) openedFid(r *req, may func(mode uint8) bool) (*fid, File) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return nil, nil
	}
	r.hold(f)
	file, opened, mode := f.get()
	switch {
	case file == nil:
		r.error(plan9.ErrUnknownFid)
	case !opened:
		r.error(plan9.ErrNotOpen)
	case !may(mode):
		r.error(plan9.ErrBadUse)
	default:
		return f, file
	}
	return nil, nil
}

func (c *conn) read(r *req) {
	f, file := c.openedFid(r, readable)
	if file == nil {
		return
	}
	count := min(r.fc.Count, c.getMsize()-IOHdrSz)
	if int64(r.fc.Offset) < 0 {
		r.error(plan9.ErrBadOffset)
		return
	}
	if file.Qid().Type&QTDIR != 0 {
		c.readDir(r, f, count)
		return
	}
	need := int64(11 + count)
	var held int64
	if need > smallFrame {
		cost := int64(c.srv.pool.size(int(need))) // the buffer's whole capacity
		if err := c.mem.Acquire(r.ctx, cost); err != nil {
			r.error(err)
			return
		}
		held = cost
	}
	bp := c.srv.pool.get(int(need))
	buf := *bp
	n, err := file.Read(r.ctx, buf[11:need], int64(r.fc.Offset))
	if err != nil && (n == 0 || !errors.Is(err, io.EOF)) && !errors.Is(err, io.EOF) {
		c.srv.pool.put(bp)
		c.mem.Release(held)
		r.error(err)
		return
	}
	n = max(0, min(n, int(count)))
	binary.LittleEndian.PutUint32(buf, uint32(11+n))
	buf[4] = Rread
	binary.LittleEndian.PutUint16(buf[5:], r.fc.Tag)
	binary.LittleEndian.PutUint32(buf[7:], uint32(n))
	if c.srv.Trace != nil {
		c.srv.Trace(c.name, false, &Fcall{Type: Rread, Tag: r.fc.Tag, Data: buf[11 : 11+n]})
	}
	r.finish(nil, buf[:11+n])
	c.srv.pool.put(bp)
	c.mem.Release(held)
}

// readDir serves a directory read from the snapshot taken at offset 0.
func (c *conn) readDir(r *req, f *fid, count uint32) {
	// The reply is held until it is written, as a file read's buffer is:
	// it counts against the connection's memory the same way.
	if need := int64(11 + count); need > smallFrame {
		if err := c.mem.Acquire(r.ctx, need); err != nil {
			r.error(err)
			return
		}
		defer c.mem.Release(need)
	}
	f.mu.Lock()
	if r.fc.Offset == 0 {
		ds, err := f.file.ReadDir(r.ctx)
		if err != nil {
			f.mu.Unlock()
			r.error(err)
			return
		}
		f.dirents, f.dirnext, f.diroff = ds, 0, 0
	} else if r.fc.Offset != f.diroff {
		f.mu.Unlock()
		r.error(plan9.ErrBadOffset)
		return
	}
	data := make([]byte, 0, min(int(count), 64<<10))
	i := f.dirnext
	for ; i < len(f.dirents); i++ {
		d := &f.dirents[i]
		if len(data)+d.Size() > int(count) {
			break
		}
		data = d.Append(data)
	}
	if i == f.dirnext && i < len(f.dirents) {
		f.mu.Unlock()
		r.error(errors.New("read count too small for a directory entry"))
		return
	}
	f.dirnext = i
	f.diroff += uint64(len(data))
	f.mu.Unlock()
	r.respond(&Fcall{Type: Rread, Data: data})
}

func (c *conn) write(r *req) {
	_, file := c.openedFid(r, writable)
	if file == nil {
		return
	}
	if file.Qid().Type&QTDIR != 0 {
		r.error(plan9.ErrIsDir)
		return
	}
	if int64(r.fc.Offset) < 0 || int64(r.fc.Offset)+int64(len(r.fc.Data)) < 0 {
		r.error(plan9.ErrBadOffset)
		return
	}
	n, err := file.Write(r.ctx, r.fc.Data, int64(r.fc.Offset))
	if err != nil && n == 0 {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rwrite, Count: uint32(n)})
}

// A vectorWriter writes several buffers as one write of them joined
// would, without joining them: nodekey.Conn, over TLS, gathers their
// records into few writes to the socket, where net.Buffers would write
// each buffer on its own.
type vectorWriter interface {
	WriteVector(bufs [][]byte) (int64, error)
}

// writeVector writes bufs to w, in one go where w can.
func writeVector(w io.Writer, bufs net.Buffers) (int64, error) {
	if vw, ok := w.(vectorWriter); ok {
		return vw.WriteVector(bufs)
	}
	return bufs.WriteTo(w)
}
