// Package abi is the wire format between the node (the host) and a
// sandboxed WebAssembly module (the guest): the requests each side sends
// the other and their responses, in a little-endian binary encoding. It is
// pure Go without dependencies, so that both the host (package wasm) and
// the guest SDK (package sdk, built for GOOS=wasip1 GOARCH=wasm) use it.
//
// # Calling convention (ABI version 1)
//
// The guest exports, to the host:
//
//	cheshire_abi() u32                the ABI version, 1
//	cheshire_alloc(size u32) u32      a buffer of at least size bytes for a request
//	cheshire_call(ptr u32, len u32) u64
//	                                  serve the request in ptr[:len]; the response
//	                                  is at resp>>32 and has resp&0xffffffff bytes
//
// The buffer from cheshire_alloc stays valid, and may be reused for any
// number of requests, until the next cheshire_alloc; a response stays valid
// until the next cheshire_call. The guest is a reactor: the host runs its
// _initialize and never its main.
//
// The host provides, in import module "cheshire":
//
//	log(ptr u32, len u32)             a line for the module's log
//	host_call(ptr u32, len u32) i32   run the guest→host request in ptr[:len] and
//	                                  keep its encoded response; returns its
//	                                  length, or -1 if no request could be run
//	host_result(ptr u32, len u32) i32 copy the kept response to ptr[:len];
//	                                  returns the bytes copied or -1
//
// The two steps let the guest size its buffer without the host calling back
// into the guest from inside a host function.
//
// # Requests
//
// Paths are slash-separated and absolute: for the ops the guest serves they
// are within the module's tree ("/" is its root); for the namespace ops the
// guest calls they are paths in the node owner's namespace. The fields of
// Request and Response each op uses:
//
//	op         request                               response
//	Stat       Path                                  Infos[0]
//	ReadDir    Path                                  Infos
//	Open       Path, Mode (open mode)                Handle
//	Create     Path (of the new file), Mode (perm),  Handle, Infos[0] (the new file)
//	           Count (open mode)
//	Read       Handle, Offset, Count                 Data (at most Count bytes), Count (1 if
//	                                                 Data ends at end of file, else 0)
//	Write      Handle, Offset, Data                  Count
//	Close      Handle                                (an error refuses what was written)
//	Remove     Path
//
//	NSRead     Path, Count (most bytes wanted)        Data (the whole file)
//	NSWrite    Path, Data                            Count (opened with truncation,
//	                                                 made if missing, written, closed)
//	NSStat     Path                                  Infos[0]
//	NSReadDir  Path                                  Infos
//	HTTP       Path (URL), User (method), Data (body) Count (status), Data (body)
//
// The guest ops also carry User, the user the request is made for. Open
// modes and permission bits are Plan 9's (OREAD, OTRUNC, DMDIR, ...). A
// response whose Err is not empty is a failure and Err is its Plan 9 error
// string; the other fields are then meaningless.
//
// The host opens files, not directories: it lists a directory by path
// with ReadDir. Create makes a directory when Mode has DMDIR; its
// response then has no handle (0). A Read whose response says the data
// ends at end of file lets the host answer the fid's next read, at the
// offset just past that data, with end of file without asking the guest
// (once; a write on the fid cancels it).
package abi

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Version is the ABI version that cheshire_abi returns.
const Version = 1

// Ops the guest serves (host→guest).
const (
	OpStat uint8 = 1 + iota
	OpReadDir
	OpOpen
	OpCreate
	OpRead
	OpWrite
	OpClose
	OpRemove
)

// Ops the host serves (guest→host).
const (
	OpNSRead uint8 = 64 + iota
	OpNSWrite
	OpNSStat
	OpNSReadDir
	OpHTTP
)

// OpName returns the name of op, for logs and errors.
func OpName(op uint8) string {
	switch op {
	case OpStat:
		return "stat"
	case OpReadDir:
		return "readdir"
	case OpOpen:
		return "open"
	case OpCreate:
		return "create"
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpClose:
		return "close"
	case OpRemove:
		return "remove"
	case OpNSRead:
		return "nsread"
	case OpNSWrite:
		return "nswrite"
	case OpNSStat:
		return "nsstat"
	case OpNSReadDir:
		return "nsreaddir"
	case OpHTTP:
		return "http"
	}
	return "unknown"
}

// Plan 9 mode bits and open modes, as used in Info.Mode and Request.Mode.
const (
	DMDIR    uint32 = 0x80000000
	DMAPPEND uint32 = 0x40000000
	DMEXCL   uint32 = 0x20000000
	DMTMP    uint32 = 0x04000000

	OREAD   uint32 = 0
	OWRITE  uint32 = 1
	ORDWR   uint32 = 2
	OEXEC   uint32 = 3
	OTRUNC  uint32 = 0x10
	ORCLOSE uint32 = 0x40
)

// A Request is one call, host→guest or guest→host.
type Request struct {
	Op     uint8
	Handle uint32
	Mode   uint32
	Offset uint64
	Count  uint32
	Path   string
	User   string
	Data   []byte
}

// A Response answers a Request.
type Response struct {
	Err    string
	Handle uint32
	Count  uint32
	Data   []byte
	Infos  []Info
}

// An Info describes a file.
type Info struct {
	Name    string
	Mode    uint32 // DMDIR etc. and the permission bits
	Size    uint64
	Mtime   uint32 // unix seconds
	Version uint32 // changes when the content does (qid.vers)
}

// Errors of decoding.
var (
	ErrShort    = errors.New("abi: message too short")
	ErrTrailing = errors.New("abi: trailing bytes after message")
)

const (
	requestFixed  = 1 + 4 + 4 + 8 + 4 + 3*4
	responseFixed = 4 + 4 + 4 + 4 + 4
	infoFixed     = 4 + 4 + 8 + 4 + 4
)

// Size is the encoded length of r.
func (r *Request) Size() int { return requestFixed + len(r.Path) + len(r.User) + len(r.Data) }

// Append encodes r onto b.
func (r *Request) Append(b []byte) []byte {
	b = append(b, r.Op)
	b = binary.LittleEndian.AppendUint32(b, r.Handle)
	b = binary.LittleEndian.AppendUint32(b, r.Mode)
	b = binary.LittleEndian.AppendUint64(b, r.Offset)
	b = binary.LittleEndian.AppendUint32(b, r.Count)
	b = appendString(b, r.Path)
	b = appendString(b, r.User)
	b = appendBytes(b, r.Data)
	return b
}

// Unmarshal decodes a request that fills b exactly. Data aliases b.
func (r *Request) Unmarshal(b []byte) error { return r.UnmarshalWith(b, nil) }

// UnmarshalWith is Unmarshal taking Path and User from strings, which
// saves making the strings a peer sends again and again.
func (r *Request) UnmarshalWith(b []byte, strings *Strings) error {
	// Written out, without the decoder's calls: the guest decodes a
	// request at every call, and calls are dear in WebAssembly.
	if len(b) < requestFixed {
		return ErrShort
	}
	var x Request
	x.Op = b[0]
	x.Handle = binary.LittleEndian.Uint32(b[1:])
	x.Mode = binary.LittleEndian.Uint32(b[5:])
	x.Offset = binary.LittleEndian.Uint64(b[9:])
	x.Count = binary.LittleEndian.Uint32(b[17:])
	rest := b[21:]
	var p [3][]byte
	for i := range p {
		if len(rest) < 4 {
			return ErrShort
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return ErrShort
		}
		p[i], rest = rest[:n:n], rest[n:]
	}
	if len(rest) != 0 {
		return ErrTrailing
	}
	if strings != nil {
		x.Path, x.User = strings.String(p[0]), strings.String(p[1])
	} else {
		x.Path, x.User = string(p[0]), string(p[1])
	}
	if len(p[2]) > 0 {
		x.Data = p[2]
	}
	*r = x
	return nil
}

// Size is the encoded length of r.
func (r *Response) Size() int {
	n := responseFixed + len(r.Err) + len(r.Data)
	for i := range r.Infos {
		n += infoFixed + len(r.Infos[i].Name)
	}
	return n
}

// Append encodes r onto b.
func (r *Response) Append(b []byte) []byte {
	// Written out, into space grown once: the guest encodes a response
	// at every call, and calls are dear in WebAssembly.
	start := len(b)
	b = slices.Grow(b, r.Size())[:start+r.Size()]
	p := b[start:]
	le := binary.LittleEndian
	le.PutUint32(p, uint32(len(r.Err)))
	p = p[4+copy(p[4:], r.Err):]
	le.PutUint32(p, r.Handle)
	le.PutUint32(p[4:], r.Count)
	le.PutUint32(p[8:], uint32(len(r.Data)))
	p = p[12+copy(p[12:], r.Data):]
	le.PutUint32(p, uint32(len(r.Infos)))
	p = p[4:]
	for i := range r.Infos {
		in := &r.Infos[i]
		le.PutUint32(p, uint32(len(in.Name)))
		p = p[4+copy(p[4:], in.Name):]
		le.PutUint32(p, in.Mode)
		le.PutUint64(p[4:], in.Size)
		le.PutUint32(p[12:], in.Mtime)
		le.PutUint32(p[16:], in.Version)
		p = p[20:]
	}
	return b
}

// Unmarshal decodes a response that fills b exactly. Data aliases b.
func (r *Response) Unmarshal(b []byte) error {
	d := decoder{b: b}
	var x Response
	x.Err = d.str()
	x.Handle = d.u32()
	x.Count = d.u32()
	x.Data = d.bytes()
	n := d.u32()
	// Each Info takes at least infoFixed bytes: a count beyond what is
	// left is a short message, not a reason to allocate.
	if d.err == nil && uint64(n) > uint64(len(d.b)/infoFixed) {
		d.err = ErrShort
	}
	if d.err == nil && n > 0 {
		x.Infos = make([]Info, n)
		for i := range x.Infos {
			x.Infos[i] = d.info()
		}
	}
	if err := d.finish(); err != nil {
		return err
	}
	*r = x
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// Strings keeps the strings decoded with it, to give the same string
// again instead of making a new one. It holds at most MaxStrings strings
// of at most 256 bytes, and is not safe for concurrent use. The zero
// value is ready to use.
type Strings struct {
	m map[string]string
}

// MaxStrings bounds what a Strings keeps.
const MaxStrings = 1024

// String returns string(b), made once.
func (s *Strings) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > 256 {
		return string(b)
	}
	if v, ok := s.m[string(b)]; ok {
		return v
	}
	if s.m == nil || len(s.m) >= MaxStrings {
		s.m = make(map[string]string)
	}
	v := string(b)
	s.m[v] = v
	return v
}

// decoder reads from b; the first error sticks and later reads return
// zero values.
type decoder struct {
	b       []byte
	err     error
	strings *Strings // if not nil, makes the strings
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = ErrShort
		d.b = nil
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	p := d.take(uint64(n))
	if len(p) == 0 {
		return nil
	}
	return p
}

func (d *decoder) str() string {
	if d.strings != nil {
		return d.strings.String(d.bytes())
	}
	return string(d.bytes())
}

func (d *decoder) info() Info {
	var in Info
	in.Name = d.str()
	in.Mode = d.u32()
	in.Size = d.u64()
	in.Mtime = d.u32()
	in.Version = d.u32()
	return in
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return ErrTrailing
	}
	return nil
}
