package styx

import (
	"encoding/binary"
	"fmt"
)

// A Dir is the machine-independent directory entry of 9P2000 stat.
type Dir struct {
	Type   uint16
	Dev    uint32
	Qid    Qid
	Mode   uint32
	Atime  uint32
	Mtime  uint32
	Length uint64
	Name   string
	Uid    string
	Gid    string
	Muid   string
}

// statFixedLen is the fixed part of a stat entry, size field included.
const statFixedLen = 2 + 2 + 4 + 13 + 4 + 4 + 4 + 8 + 4*2

// Append marshals d as a stat entry (with its leading size) onto b.
func (d *Dir) Append(b []byte) []byte {
	start := len(b)
	b = pbit16(b, 0)
	b = pbit16(b, d.Type)
	b = pbit32(b, d.Dev)
	b = pqid(b, d.Qid)
	b = pbit32(b, d.Mode)
	b = pbit32(b, d.Atime)
	b = pbit32(b, d.Mtime)
	b = pbit64(b, d.Length)
	b = pstr(b, d.Name)
	b = pstr(b, d.Uid)
	b = pstr(b, d.Gid)
	b = pstr(b, d.Muid)
	binary.LittleEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	return b
}

// Size is the marshalled length of d, size field included.
func (d *Dir) Size() int {
	return statFixedLen + len(d.Name) + len(d.Uid) + len(d.Gid) + len(d.Muid)
}

// Bytes marshals d into a new slice.
func (d *Dir) Bytes() []byte { return d.Append(make([]byte, 0, d.Size())) }

// UnmarshalDir decodes one stat entry that fills b exactly.
func UnmarshalDir(b []byte) (Dir, error) {
	d, n, err := unmarshalDirPrefix(b)
	if err == nil && n != len(b) {
		err = ErrBadSize
	}
	return d, err
}

func unmarshalDirPrefix(b []byte) (Dir, int, error) { return unmarshalDirAfter(b, nil) }

// unmarshalDirAfter is unmarshalDirPrefix, taking the owner, group and
// muid strings of prev (if not nil) where they are the same.
func unmarshalDirAfter(b []byte, prev *Dir) (Dir, int, error) {
	if len(b) < 2 {
		return Dir{}, 0, ErrShort
	}
	n := int(binary.LittleEndian.Uint16(b)) + 2
	if n > len(b) || n < statFixedLen {
		return Dir{}, 0, ErrShort
	}
	dec := decoder{b: b[2:n]}
	var d Dir
	d.Type = dec.u16()
	d.Dev = dec.u32()
	d.Qid = dec.qid()
	d.Mode = dec.u32()
	d.Atime = dec.u32()
	d.Mtime = dec.u32()
	d.Length = dec.u64()
	d.Name = dec.str()
	if prev == nil {
		d.Uid = dec.str()
		d.Gid = dec.str()
		d.Muid = dec.str()
	} else {
		d.Uid = dec.strOf(prev.Uid, prev.Gid, prev.Muid)
		d.Gid = dec.strOf(d.Uid, prev.Gid, prev.Muid)
		d.Muid = dec.strOf(d.Uid, d.Gid, prev.Muid)
	}
	if dec.err != nil {
		return Dir{}, 0, dec.err
	}
	if len(dec.b) != 0 {
		return Dir{}, 0, ErrBadSize
	}
	return d, n, nil
}

// UnmarshalDirs decodes the concatenated entries of a directory read.
// The slice is sized to the entries at once, and an owner, group or
// muid equal to the entry before's shares its string: a listing of one
// user's files allocates one string per name, not four.
func UnmarshalDirs(b []byte) ([]Dir, error) {
	n := 0
	for r := b; len(r) >= 2; n++ {
		sz := int(binary.LittleEndian.Uint16(r)) + 2
		if sz > len(r) {
			break
		}
		r = r[sz:]
	}
	ds := make([]Dir, 0, n)
	for len(b) > 0 {
		var prev *Dir
		if k := len(ds); k > 0 {
			prev = &ds[k-1]
		}
		d, n, err := unmarshalDirAfter(b, prev)
		if err != nil {
			return ds, err
		}
		ds = append(ds, d)
		b = b[n:]
	}
	return ds, nil
}

// NullDir returns a Dir whose fields all mean "don't touch" in a Twstat.
func NullDir() Dir {
	return Dir{Type: ^uint16(0), Dev: ^uint32(0), Qid: Qid{^uint8(0), ^uint32(0), ^uint64(0)},
		Mode: ^uint32(0), Atime: ^uint32(0), Mtime: ^uint32(0), Length: ^uint64(0)}
}

func (d Dir) String() string {
	return fmt.Sprintf("'%s' '%s' '%s' '%s' q %v m %#o at %d mt %d l %d t %d d %d",
		d.Name, d.Uid, d.Gid, d.Muid, d.Qid, d.Mode, d.Atime, d.Mtime, d.Length, d.Type, d.Dev)
}
