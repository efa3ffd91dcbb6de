// Package styx is cheshire's 9P2000 (Styx) engine: the wire codec, a
// concurrent server with bounded memory per connection and real flush, and a
// multiplexed, pipelining client.
//
// The codec appends into caller-owned buffers and decodes without copying
// payloads (Data and Stat of a decoded Fcall alias the frame), so the server
// and client can reuse frame buffers from pools.
package styx

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message types of 9P2000.
const (
	Tversion uint8 = 100 + iota
	Rversion
	Tauth
	Rauth
	Tattach
	Rattach
	Terror // illegal
	Rerror
	Tflush
	Rflush
	Twalk
	Rwalk
	Topen
	Ropen
	Tcreate
	Rcreate
	Tread
	Rread
	Twrite
	Rwrite
	Tclunk
	Rclunk
	Tremove
	Rremove
	Tstat
	Rstat
	Twstat
	Rwstat
	tmax
)

// Protocol constants.
const (
	NoTag   uint16 = 0xFFFF
	NoFid   uint32 = 0xFFFFFFFF
	MaxWalk        = 16 // most names in one Twalk
	// IOHdrSz is the overhead of a Twrite or Rread header; iounit = msize - IOHdrSz.
	IOHdrSz = 24
	// MinMsize is the smallest msize the engine negotiates.
	MinMsize = 256
	// Version is the only protocol version spoken.
	Version = "9P2000"
)

// Qid types.
const (
	QTDIR    uint8 = 0x80
	QTAPPEND uint8 = 0x40
	QTEXCL   uint8 = 0x20
	QTMOUNT  uint8 = 0x10
	QTAUTH   uint8 = 0x08
	QTTMP    uint8 = 0x04
	QTFILE   uint8 = 0x00
)

// Mode bits of Dir.Mode and Tcreate perm.
const (
	DMDIR    uint32 = 0x80000000
	DMAPPEND uint32 = 0x40000000
	DMEXCL   uint32 = 0x20000000
	DMMOUNT  uint32 = 0x10000000
	DMAUTH   uint32 = 0x08000000
	DMTMP    uint32 = 0x04000000
)

// Open modes.
const (
	OREAD   uint8 = 0
	OWRITE  uint8 = 1
	ORDWR   uint8 = 2
	OEXEC   uint8 = 3
	OTRUNC  uint8 = 0x10
	ORCLOSE uint8 = 0x40
)

// A Qid is the server's unique identification of a file.
type Qid struct {
	Type uint8
	Vers uint32
	Path uint64
}

func (q Qid) String() string {
	return fmt.Sprintf("(%016x %d %s)", q.Path, q.Vers, qidTypeString(q.Type))
}

func qidTypeString(t uint8) string {
	s := ""
	for _, c := range []struct {
		b uint8
		r byte
	}{{QTDIR, 'd'}, {QTAPPEND, 'a'}, {QTEXCL, 'l'}, {QTMOUNT, 'm'}, {QTAUTH, 'A'}, {QTTMP, 't'}} {
		if t&c.b != 0 {
			s += string(c.r)
		}
	}
	return s
}

// Fcall is one 9P message. Only the fields of its Type are meaningful.
type Fcall struct {
	Type    uint8
	Tag     uint16
	Fid     uint32
	Msize   uint32   // Tversion, Rversion
	Version string   // Tversion, Rversion
	Oldtag  uint16   // Tflush
	Ename   string   // Rerror
	Qid     Qid      // Rauth, Rattach, Ropen, Rcreate
	Iounit  uint32   // Ropen, Rcreate
	Afid    uint32   // Tauth, Tattach
	Uname   string   // Tauth, Tattach
	Aname   string   // Tauth, Tattach
	Perm    uint32   // Tcreate
	Name    string   // Tcreate
	Mode    uint8    // Topen, Tcreate
	Newfid  uint32   // Twalk
	Wname   []string // Twalk
	Wqid    []Qid    // Rwalk
	Offset  uint64   // Tread, Twrite
	Count   uint32   // Tread, Rwrite
	Data    []byte   // Twrite, Rread
	Stat    []byte   // Twstat, Rstat
}

// ErrShort and the other codec errors describe a damaged frame.
var (
	ErrShort     = errors.New("message too short")
	ErrLong      = errors.New("message too long")
	ErrBadType   = errors.New("bad message type")
	ErrBadWalk   = errors.New("too many names in walk")
	ErrBadSize   = errors.New("size field does not match message")
	ErrBadString = errors.New("bad string in message")
)

func pbit8(b []byte, x uint8) []byte   { return append(b, x) }
func pbit16(b []byte, x uint16) []byte { return binary.LittleEndian.AppendUint16(b, x) }
func pbit32(b []byte, x uint32) []byte { return binary.LittleEndian.AppendUint32(b, x) }
func pbit64(b []byte, x uint64) []byte { return binary.LittleEndian.AppendUint64(b, x) }
func pstr(b []byte, s string) []byte   { return append(pbit16(b, uint16(len(s))), s...) }
func pqid(b []byte, q Qid) []byte      { return pbit64(pbit32(pbit8(b, q.Type), q.Vers), q.Path) }

// Append marshals f onto b and returns the extended slice. The message must
// fit in 2^32 bytes; strings longer than 65535 bytes are an error.
func (f *Fcall) Append(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = pbit8(b, f.Type)
	b = pbit16(b, f.Tag)
	switch f.Type {
	case Tversion, Rversion:
		b = pbit32(b, f.Msize)
		b = pstr(b, f.Version)
	case Tauth:
		b = pbit32(b, f.Afid)
		b = pstr(b, f.Uname)
		b = pstr(b, f.Aname)
	case Rauth, Rattach:
		b = pqid(b, f.Qid)
	case Tattach:
		b = pbit32(b, f.Fid)
		b = pbit32(b, f.Afid)
		b = pstr(b, f.Uname)
		b = pstr(b, f.Aname)
	case Rerror:
		b = pstr(b, f.Ename)
	case Tflush:
		b = pbit16(b, f.Oldtag)
	case Rflush, Rclunk, Rremove, Rwstat:
	case Twalk:
		if len(f.Wname) > MaxWalk {
			return b[:start], ErrBadWalk
		}
		b = pbit32(b, f.Fid)
		b = pbit32(b, f.Newfid)
		b = pbit16(b, uint16(len(f.Wname)))
		for _, n := range f.Wname {
			if len(n) > 0xFFFF {
				return b[:start], ErrBadString
			}
			b = pstr(b, n)
		}
	case Rwalk:
		if len(f.Wqid) > MaxWalk {
			return b[:start], ErrBadWalk
		}
		b = pbit16(b, uint16(len(f.Wqid)))
		for _, q := range f.Wqid {
			b = pqid(b, q)
		}
	case Topen:
		b = pbit32(b, f.Fid)
		b = pbit8(b, f.Mode)
	case Ropen, Rcreate:
		b = pqid(b, f.Qid)
		b = pbit32(b, f.Iounit)
	case Tcreate:
		b = pbit32(b, f.Fid)
		b = pstr(b, f.Name)
		b = pbit32(b, f.Perm)
		b = pbit8(b, f.Mode)
	case Tread:
		b = pbit32(b, f.Fid)
		b = pbit64(b, f.Offset)
		b = pbit32(b, f.Count)
	case Rread:
		b = pbit32(b, uint32(len(f.Data)))
		b = append(b, f.Data...)
	case Twrite:
		b = pbit32(b, f.Fid)
		b = pbit64(b, f.Offset)
		b = pbit32(b, uint32(len(f.Data)))
		b = append(b, f.Data...)
	case Rwrite:
		b = pbit32(b, f.Count)
	case Tclunk, Tremove, Tstat:
		b = pbit32(b, f.Fid)
	case Rstat:
		b = pbit16(b, uint16(len(f.Stat)))
		b = append(b, f.Stat...)
	case Twstat:
		b = pbit32(b, f.Fid)
		b = pbit16(b, uint16(len(f.Stat)))
		b = append(b, f.Stat...)
	default:
		return b[:start], ErrBadType
	}
	if len(b)-start > 0xFFFFFFFF {
		return b[:start], ErrLong
	}
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// Bytes marshals f into a new slice.
func (f *Fcall) Bytes() ([]byte, error) { return f.Append(nil) }

// decoder reads little-endian fields with a sticky overrun flag: once the
// data runs out every read returns zero, and the caller checks err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < n {
		d.err = ErrShort
		d.b = nil
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	x := d.b[0]
	d.b = d.b[1:]
	return x
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	x := binary.LittleEndian.Uint16(d.b)
	d.b = d.b[2:]
	return x
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	x := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return x
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	x := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return x
}

func (d *decoder) bytes(n int) []byte {
	if !d.need(n) {
		return nil
	}
	x := d.b[:n:n]
	d.b = d.b[n:]
	return x
}

func (d *decoder) str() string {
	n := int(d.u16())
	return string(d.bytes(n))
}

// strOf is str, returning the first of olds with the same bytes rather
// than a new string.
func (d *decoder) strOf(olds ...string) string {
	n := int(d.u16())
	b := d.bytes(n)
	for _, o := range olds {
		if string(b) == o {
			return o
		}
	}
	return string(b)
}

func (d *decoder) qid() Qid {
	return Qid{Type: d.u8(), Vers: d.u32(), Path: d.u64()}
}

// Unmarshal decodes the frame b (size field included) into f, overwriting
// every field. Data and Stat alias b.
func (f *Fcall) Unmarshal(b []byte) error {
	*f = Fcall{}
	if len(b) < 7 {
		return ErrShort
	}
	if int(binary.LittleEndian.Uint32(b)) != len(b) {
		return ErrBadSize
	}
	d := decoder{b: b[4:]}
	f.Type = d.u8()
	f.Tag = d.u16()
	switch f.Type {
	case Tversion, Rversion:
		f.Msize = d.u32()
		f.Version = d.str()
	case Tauth:
		f.Afid = d.u32()
		f.Uname = d.str()
		f.Aname = d.str()
	case Rauth, Rattach:
		f.Qid = d.qid()
	case Tattach:
		f.Fid = d.u32()
		f.Afid = d.u32()
		f.Uname = d.str()
		f.Aname = d.str()
	case Rerror:
		f.Ename = d.str()
	case Tflush:
		f.Oldtag = d.u16()
	case Rflush, Rclunk, Rremove, Rwstat:
	case Twalk:
		f.Fid = d.u32()
		f.Newfid = d.u32()
		n := int(d.u16())
		if n > MaxWalk {
			return ErrBadWalk
		}
		if n > 0 {
			f.Wname = make([]string, n)
			for i := range f.Wname {
				f.Wname[i] = d.str()
			}
		}
	case Rwalk:
		n := int(d.u16())
		if n > MaxWalk {
			return ErrBadWalk
		}
		if n > 0 {
			f.Wqid = make([]Qid, n)
			for i := range f.Wqid {
				f.Wqid[i] = d.qid()
			}
		}
	case Topen:
		f.Fid = d.u32()
		f.Mode = d.u8()
	case Ropen, Rcreate:
		f.Qid = d.qid()
		f.Iounit = d.u32()
	case Tcreate:
		f.Fid = d.u32()
		f.Name = d.str()
		f.Perm = d.u32()
		f.Mode = d.u8()
	case Tread:
		f.Fid = d.u32()
		f.Offset = d.u64()
		f.Count = d.u32()
	case Rread:
		f.Data = d.bytes(int(d.u32()))
	case Twrite:
		f.Fid = d.u32()
		f.Offset = d.u64()
		f.Data = d.bytes(int(d.u32()))
	case Rwrite:
		f.Count = d.u32()
	case Tclunk, Tremove, Tstat:
		f.Fid = d.u32()
	case Rstat:
		f.Stat = d.bytes(int(d.u16()))
	case Twstat:
		f.Fid = d.u32()
		f.Stat = d.bytes(int(d.u16()))
	default:
		return ErrBadType
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return ErrBadSize
	}
	return nil
}

// String formats f the way a protocol trace prints it.
func (f *Fcall) String() string {
	h := fmt.Sprintf("%s tag %d", typeName(f.Type), f.Tag)
	switch f.Type {
	case Tversion, Rversion:
		return fmt.Sprintf("%s msize %d version %q", h, f.Msize, f.Version)
	case Tauth:
		return fmt.Sprintf("%s afid %d uname %q aname %q", h, f.Afid, f.Uname, f.Aname)
	case Rauth, Rattach:
		return fmt.Sprintf("%s qid %v", h, f.Qid)
	case Tattach:
		return fmt.Sprintf("%s fid %d afid %d uname %q aname %q", h, f.Fid, int32(f.Afid), f.Uname, f.Aname)
	case Rerror:
		return fmt.Sprintf("%s ename %q", h, f.Ename)
	case Tflush:
		return fmt.Sprintf("%s oldtag %d", h, f.Oldtag)
	case Twalk:
		return fmt.Sprintf("%s fid %d newfid %d wname %q", h, f.Fid, f.Newfid, f.Wname)
	case Rwalk:
		return fmt.Sprintf("%s wqid %v", h, f.Wqid)
	case Topen:
		return fmt.Sprintf("%s fid %d mode %d", h, f.Fid, f.Mode)
	case Ropen, Rcreate:
		return fmt.Sprintf("%s qid %v iounit %d", h, f.Qid, f.Iounit)
	case Tcreate:
		return fmt.Sprintf("%s fid %d name %q perm %#o mode %d", h, f.Fid, f.Name, f.Perm, f.Mode)
	case Tread:
		return fmt.Sprintf("%s fid %d offset %d count %d", h, f.Fid, f.Offset, f.Count)
	case Rread:
		return fmt.Sprintf("%s count %d", h, len(f.Data))
	case Twrite:
		return fmt.Sprintf("%s fid %d offset %d count %d", h, f.Fid, f.Offset, len(f.Data))
	case Rwrite:
		return fmt.Sprintf("%s count %d", h, f.Count)
	case Tclunk, Tremove, Tstat:
		return fmt.Sprintf("%s fid %d", h, f.Fid)
	case Rstat:
		d, err := UnmarshalDir(f.Stat)
		if err != nil {
			return fmt.Sprintf("%s stat (bad: %v)", h, err)
		}
		return fmt.Sprintf("%s stat %v", h, d)
	case Twstat:
		d, err := UnmarshalDir(f.Stat)
		if err != nil {
			return fmt.Sprintf("%s fid %d stat (bad: %v)", h, f.Fid, err)
		}
		return fmt.Sprintf("%s fid %d stat %v", h, f.Fid, d)
	}
	return h
}

var typeNames = [...]string{"Tversion", "Rversion", "Tauth", "Rauth", "Tattach", "Rattach", "Terror", "Rerror",
	"Tflush", "Rflush", "Twalk", "Rwalk", "Topen", "Ropen", "Tcreate", "Rcreate", "Tread", "Rread",
	"Twrite", "Rwrite", "Tclunk", "Rclunk", "Tremove", "Rremove", "Tstat", "Rstat", "Twstat", "Rwstat"}

func typeName(t uint8) string {
	if t >= Tversion && t < tmax {
		return typeNames[t-Tversion]
	}
	return fmt.Sprintf("type%d", t)
}
