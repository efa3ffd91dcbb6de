package apps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// xtest is a connection to a display that sends pointer events through
// the XTEST extension: the pointer moves and buttons that the page sends
// many times a second go out as one 36-byte request each, with no
// process started per event. Keys and text go through xdotool, which
// knows the keyboard mapping.
type xtest struct {
	mu     sync.Mutex
	conn   net.Conn
	root   uint32
	opcode byte
}

// X11 and XTEST protocol numbers.
const (
	xQueryExtension = 98
	xtFakeInput     = 2
	xButtonPress    = 4
	xButtonRelease  = 5
	xMotionNotify   = 6
)

// dialXTest connects to display (":N", its unix socket) and finds XTEST.
func dialXTest(display string) (*xtest, error) {
	n := strings.TrimPrefix(display, ":")
	c, err := net.DialTimeout("unix", "/tmp/.X11-unix/X"+n, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("apps: display %s: %w", display, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	x, err := xtestSetup(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("apps: display %s: %w", display, err)
	}
	c.SetDeadline(time.Time{})
	go io.Copy(io.Discard, c) // errors and events, if any; ends when c closes
	return x, nil
}

func xtestSetup(c net.Conn) (*xtest, error) {
	le := binary.LittleEndian
	// Connection setup: little-endian, protocol 11.0, no authorization.
	if _, err := c.Write([]byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		return nil, err
	}
	head := make([]byte, 8)
	if _, err := io.ReadFull(c, head); err != nil {
		return nil, err
	}
	more := make([]byte, int(le.Uint16(head[6:]))*4)
	if _, err := io.ReadFull(c, more); err != nil {
		return nil, err
	}
	if head[0] != 1 {
		return nil, errors.New("x11 connection: permission denied")
	}
	if len(more) < 32 {
		return nil, errors.New("bad x11 setup reply")
	}
	vendorLen, nFormats := int(le.Uint16(more[16:])), int(more[21])
	off := 32 + (vendorLen+3)/4*4 + 8*nFormats
	if off+4 > len(more) {
		return nil, errors.New("bad x11 setup reply")
	}
	x := &xtest{conn: c, root: le.Uint32(more[off:])}
	// QueryExtension "XTEST".
	name := "XTEST"
	pad := (4 - len(name)%4) % 4
	req := make([]byte, 8+len(name)+pad)
	req[0] = xQueryExtension
	le.PutUint16(req[2:], uint16(len(req)/4))
	le.PutUint16(req[4:], uint16(len(name)))
	copy(req[8:], name)
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	rep := make([]byte, 32)
	if _, err := io.ReadFull(c, rep); err != nil {
		return nil, err
	}
	if rep[0] != 1 || rep[8] == 0 {
		return nil, errors.New("no XTEST extension")
	}
	x.opcode = rep[9]
	return x, nil
}

// fake sends one XTEST FakeInput request.
func (x *xtest) fake(typ, detail byte, px, py int) error {
	le := binary.LittleEndian
	var req [36]byte
	req[0], req[1] = x.opcode, xtFakeInput
	le.PutUint16(req[2:], 9)
	req[4], req[5] = typ, detail
	// time 0: CurrentTime
	le.PutUint32(req[12:], x.root)
	le.PutUint16(req[24:], uint16(int16(px)))
	le.PutUint16(req[26:], uint16(int16(py)))
	x.mu.Lock()
	defer x.mu.Unlock()
	x.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := x.conn.Write(req[:]); err != nil {
		return fmt.Errorf("apps: display connection: %w", err)
	}
	return nil
}

// pointer carries out a move, down or up event; it reports false for
// other events.
func (x *xtest) pointer(ev event) (bool, error) {
	switch ev.verb {
	case "move":
		return true, x.fake(xMotionNotify, 0, ev.a, ev.b)
	case "down":
		return true, x.fake(xButtonPress, byte(ev.a), 0, 0)
	case "up":
		return true, x.fake(xButtonRelease, byte(ev.a), 0, 0)
	}
	return false, nil
}

func (x *xtest) close() { x.conn.Close() }
