// Pack reuse: a pack for a fetch made of the entries of the
// repository's own pack files, copied compressed as they are.

package smarthttp

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// errNoReuse says that a pack cannot be made by reuse (the repository
// is not on disk, or an object is in none of its packs nor loose);
// go-git's encoder makes it then.
var errNoReuse = errors.New("git: pack cannot be reused")

// packSource is one pack file of the repository and its index.
type packSource struct {
	f    *os.File
	idx  *idxfile.MemoryIndex
	size int64
	ends map[int64]int64 // entry offset → offset of the next entry (or the trailer)
}

// reuseEntry is an object of the pack being made.
type reuseEntry struct {
	hash  plumbing.Hash
	src   int   // index into the sources; -1 for a loose object
	off   int64 // its offset in the source pack
	typ   int   // pack type: objCommit.. or objOFSDelta, objREFDelta
	size  int64 // the header's size: the object's, or the delta's
	data  int64 // where its compressed data begins in the source
	end   int64 // and ends
	base  plumbing.Hash
	out   int64  // its offset in the pack made
	loose []byte // a loose object's content, compressed
}

// reusePack writes to w a pack of objects, and of the delta bases they
// need, whose entries are those of the repository's pack files, their
// compressed data copied as it is: nothing is inflated, searched for
// deltas, or compressed again, so it costs what copying costs (git's
// pack-objects reuses entries so too). An ofs-delta's base offset is
// rewritten for its place in the new pack, or, for a client without
// ofs-delta (refDeltas), it becomes a ref-delta. Loose objects are
// compressed anew. It fails with errNoReuse, having written nothing,
// when it cannot make the pack.
func reusePack(repo *gogit.Repository, objects []plumbing.Hash, refDeltas bool, w io.Writer) error {
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return errNoReuse
	}
	objDir := filepath.Join(st.Filesystem().Root(), "objects")
	srcs, err := openSources(objDir)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()
	byHash := map[plumbing.Hash]*reuseEntry{}
	var entries []*reuseEntry
	queue := slices.Clone(objects)
	for len(queue) > 0 {
		h := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if byHash[h] != nil {
			continue
		}
		e, err := findEntry(srcs, objDir, h)
		if err != nil {
			return err
		}
		e.out = -1
		byHash[h] = e
		entries = append(entries, e)
		if e.typ == objOFSDelta || e.typ == objREFDelta {
			queue = append(queue, e.base)
		}
	}
	// Loose objects first, then each pack's entries in its order, so
	// that an ofs-delta's base, before it in its pack, is before it here.
	slices.SortFunc(entries, func(a, b *reuseEntry) int {
		if a.src != b.src {
			return a.src - b.src
		}
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	sum := sha1.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 64<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(entries)))
	bw.Write(hdr[:])
	pos := int64(12)
	var buf []byte
	for _, e := range entries {
		e.out = pos
		typ := e.typ
		if typ == objOFSDelta && (refDeltas || byHash[e.base].out < 0) {
			// A base taken from another pack (an object in two) may
			// come after: a ref-delta may name a base anywhere.
			typ = objREFDelta
		}
		buf = appendObjectHeader(buf[:0], typ, e.size)
		switch typ {
		case objOFSDelta:
			buf = appendOffset(buf, e.out-byHash[e.base].out)
		case objREFDelta:
			buf = append(buf, e.base[:]...)
		}
		bw.Write(buf)
		pos += int64(len(buf))
		if e.src < 0 {
			bw.Write(e.loose)
			pos += int64(len(e.loose))
			continue
		}
		n, err := io.Copy(bw, io.NewSectionReader(srcs[e.src].f, e.data, e.end-e.data))
		if err != nil {
			return fmt.Errorf("git: reading pack: %w", err)
		}
		pos += n
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(sum.Sum(nil))
	return err
}

// openSources opens the pack files of objDir and their indexes.
func openSources(objDir string) ([]*packSource, error) {
	idxs, _ := filepath.Glob(filepath.Join(objDir, "pack", "*.idx"))
	var srcs []*packSource
	fail := func(err error) ([]*packSource, error) {
		for _, s := range srcs {
			s.f.Close()
		}
		return nil, err
	}
	for _, p := range idxs {
		data, err := os.ReadFile(p)
		if err != nil {
			return fail(err)
		}
		idx := idxfile.NewMemoryIndex()
		if err := idxfile.NewDecoder(bytes.NewReader(data)).Decode(idx); err != nil {
			return fail(fmt.Errorf("git: %s: %w", filepath.Base(p), err))
		}
		f, err := os.Open(strings.TrimSuffix(p, ".idx") + ".pack")
		if err != nil {
			return fail(err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fail(err)
		}
		s := &packSource{f: f, idx: idx, size: fi.Size(), ends: map[int64]int64{}}
		srcs = append(srcs, s)
		it, err := idx.EntriesByOffset()
		if err != nil {
			return fail(err)
		}
		var offs []int64
		for {
			e, err := it.Next()
			if err != nil {
				break
			}
			offs = append(offs, int64(e.Offset))
		}
		it.Close()
		for i, o := range offs {
			if i+1 < len(offs) {
				s.ends[o] = offs[i+1]
			} else {
				s.ends[o] = s.size - 20
			}
		}
	}
	return srcs, nil
}

// findEntry finds object h in a pack (parsing its entry's header) or
// loose (compressing it as a whole object).
func findEntry(srcs []*packSource, objDir string, h plumbing.Hash) (*reuseEntry, error) {
	for i, s := range srcs {
		off, err := s.idx.FindOffset(h)
		if err != nil {
			continue
		}
		return parseEntry(s, i, h, off)
	}
	hex := h.String()
	raw, err := os.ReadFile(filepath.Join(objDir, hex[:2], hex[2:]))
	if err != nil {
		return nil, errNoReuse
	}
	return looseEntry(h, raw)
}

// parseEntry reads the header of the entry of h at off in pack s.
func parseEntry(s *packSource, src int, h plumbing.Hash, off int64) (*reuseEntry, error) {
	end, ok := s.ends[off]
	if !ok {
		return nil, errNoReuse
	}
	var hb [40]byte // the longest header: 10 bytes of type and size, 20 of base
	n, _ := s.f.ReadAt(hb[:min(int64(len(hb)), end-off)], off)
	r := bytes.NewReader(hb[:n])
	c, err := r.ReadByte()
	if err != nil {
		return nil, errNoReuse
	}
	e := &reuseEntry{hash: h, src: src, off: off, typ: int(c>>4) & 7, size: int64(c & 0x0f), end: end}
	for shift := 4; c&0x80 != 0; shift += 7 {
		if c, err = r.ReadByte(); err != nil || shift > 56 {
			return nil, errNoReuse
		}
		e.size |= int64(c&0x7f) << shift
	}
	switch e.typ {
	case objCommit, objTree, objBlob, objTag:
	case objOFSDelta:
		var dist int64
		for j := 0; ; j++ {
			if c, err = r.ReadByte(); err != nil || dist > 1<<55 {
				return nil, errNoReuse
			}
			if j > 0 {
				dist++
			}
			dist = dist<<7 | int64(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		if e.base, err = s.idx.FindHash(off - dist); err != nil {
			return nil, errNoReuse
		}
	case objREFDelta:
		if _, err := io.ReadFull(r, e.base[:]); err != nil {
			return nil, errNoReuse
		}
	default:
		return nil, errNoReuse
	}
	e.data = off + int64(n-r.Len())
	return e, nil
}

// looseEntry makes the entry of a loose object from its file (zlib of
// "TYPE SIZE\0CONTENT"): a whole object, compressed anew without its
// header.
func looseEntry(h plumbing.Hash, raw []byte) (*reuseEntry, error) {
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, errNoReuse
	}
	defer zr.Close()
	content, err := io.ReadAll(io.LimitReader(zr, DefaultMaxObject+64))
	if err != nil {
		return nil, errNoReuse
	}
	head, body, ok := bytes.Cut(content, []byte{0})
	if !ok {
		return nil, errNoReuse
	}
	kind, _, _ := bytes.Cut(head, []byte{' '})
	typ := map[string]int{"commit": objCommit, "tree": objTree, "blob": objBlob, "tag": objTag}[string(kind)]
	if typ == 0 {
		return nil, errNoReuse
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(body)
	zw.Close()
	return &reuseEntry{hash: h, src: -1, typ: typ, size: int64(len(body)), loose: z.Bytes()}, nil
}

// appendObjectHeader appends a pack entry's type and size header.
func appendObjectHeader(b []byte, typ int, size int64) []byte {
	c := byte(typ<<4) | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		b = append(b, c|0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	return append(b, c)
}

// appendOffset appends an ofs-delta's distance back to its base, in
// the pack format's own varint (gitformat-pack(5)).
func appendOffset(b []byte, ofs int64) []byte {
	var tmp [10]byte
	i := len(tmp) - 1
	tmp[i] = byte(ofs & 0x7f)
	for ofs >>= 7; ofs > 0; ofs >>= 7 {
		ofs--
		i--
		tmp[i] = 0x80 | byte(ofs&0x7f)
	}
	return append(b, tmp[i:]...)
}
