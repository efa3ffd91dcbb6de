// Limits on the objects of a push: none may inflate beyond the node's
// means.

package smarthttp

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// Default limits on the objects of a pushed pack.
const (
	DefaultMaxObject   = 512 << 20 // an object's inflated size, or a delta's result
	DefaultMaxInflated = 4 << 30   // the inflated sizes of all a pack's objects and delta results
)

// Pack object types (gitformat-pack(5)).
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOFSDelta = 6
	objREFDelta = 7
)

var errPackTruncated = errors.New("git: bad pack: truncated")

// checkPack reads the pack in r and checks, before go-git's parser sees
// it, that no object declares an inflated size (nor a delta a result)
// over maxObject, that the sizes and results together stay within
// maxInflated, and that each object's zlib stream inflates to the size
// its header declares. A header's size is checked before its object is
// inflated, and inflating discards what it makes, so checking costs
// memory of a few buffers, and time bounded by maxInflated.
//
// s, if not nil, is handed each commit, tree and tag (and each delta
// whose result is one) as it is read, so that the paths a push changes
// are known while the rest of it arrives.
func checkPack(r io.Reader, maxObject, maxInflated int64, s *streamer) error {
	cr := &countReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return errPackTruncated
	}
	if string(hdr[:4]) != "PACK" {
		return errors.New("git: bad pack: no header")
	}
	if v := binary.BigEndian.Uint32(hdr[4:]); v != 2 && v != 3 {
		return fmt.Errorf("git: bad pack: version %d", v)
	}
	count := binary.BigEndian.Uint32(hdr[8:])
	var (
		total   int64
		zr      io.ReadCloser
		head    deltaHead
		content bytes.Buffer
	)
	for i := uint32(0); i < count; i++ {
		start := cr.n - int64(br.Buffered())
		typ, size, err := objectHeader(br)
		if err != nil {
			return err
		}
		var (
			baseOff  int64
			baseHash plumbing.Hash
		)
		switch typ {
		case objCommit, objTree, objBlob, objTag:
		case objOFSDelta:
			// The base's distance back: a varint of its own kind
			// (gitformat-pack(5), "offset encoding").
			for j := 0; ; j++ {
				c, err := br.ReadByte()
				if err != nil {
					return errPackTruncated
				}
				if j > 0 {
					baseOff++
				}
				if baseOff > 1<<55 {
					return errors.New("git: bad pack: bad delta offset")
				}
				baseOff = baseOff<<7 | int64(c&0x7f)
				if c&0x80 == 0 {
					break
				}
			}
			baseOff = start - baseOff
		case objREFDelta:
			if _, err := io.ReadFull(br, baseHash[:]); err != nil {
				return errPackTruncated
			}
		default:
			return fmt.Errorf("git: bad pack: object type %d", typ)
		}
		if size > maxObject {
			return tooLarge(size, maxObject)
		}
		if total += size; total > maxInflated {
			return fmt.Errorf("git: pack too large: inflates to over %d bytes", maxInflated)
		}
		if zr == nil {
			zr, err = zlib.NewReader(br)
		} else {
			err = zr.(zlib.Resetter).Reset(br, nil)
		}
		if err != nil {
			return badStream(err)
		}
		var w io.Writer = io.Discard
		base, rtyp, keep := s.want(start, typ, size, baseOff, baseHash)
		if keep {
			content.Reset()
			w = &content
		}
		if typ == objOFSDelta || typ == objREFDelta {
			head = deltaHead{}
			if keep {
				w = io.MultiWriter(&head, &content)
			} else {
				w = &head
			}
		}
		// A stream that inflates to more than size stops at size+1.
		n, err := io.CopyN(w, zr, size+1)
		switch {
		case err != io.EOF && err != nil:
			return badStream(err)
		case n != size:
			return fmt.Errorf("git: bad pack: object %d inflates to other than its %d bytes", i, size)
		}
		if w == &head {
			result, ok := head.result()
			if !ok {
				return errors.New("git: bad pack: bad delta")
			}
			if result > maxObject {
				return tooLarge(result, maxObject)
			}
			if total += result; total > maxInflated {
				return fmt.Errorf("git: pack too large: inflates to over %d bytes", maxInflated)
			}
		}
		if keep {
			s.object(start, rtyp, base, content.Bytes())
		}
	}
	if _, err := br.Discard(20); err != nil { // the checksum, which go-git checks
		return errPackTruncated
	}
	return nil
}

// objectHeader reads an object's type and inflated size.
func objectHeader(br *bufio.Reader) (typ int, size int64, err error) {
	c, err := br.ReadByte()
	if err != nil {
		return 0, 0, errPackTruncated
	}
	typ = int(c>>4) & 7
	size = int64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if c, err = br.ReadByte(); err != nil {
			return 0, 0, errPackTruncated
		}
		if shift > 56 {
			return 0, 0, errors.New("git: bad pack: bad object size")
		}
		size |= int64(c&0x7f) << shift
	}
	if size < 0 {
		return 0, 0, errors.New("git: bad pack: bad object size")
	}
	return typ, size, nil
}

func tooLarge(size, limit int64) error {
	return fmt.Errorf("git: pack object too large: %d bytes, limit %d", size, limit)
}

func badStream(err error) error {
	if err == io.ErrUnexpectedEOF {
		return errPackTruncated
	}
	return fmt.Errorf("git: bad pack: %v", err)
}

// deltaHead keeps the first bytes of a delta, which hold the sizes of
// its base and its result, and drops the rest.
type deltaHead struct {
	b [20]byte
	n int
}

func (d *deltaHead) Write(p []byte) (int, error) {
	d.n += copy(d.b[d.n:], p)
	return len(p), nil
}

// result returns the size of the delta's result.
func (d *deltaHead) result() (int64, bool) {
	b := d.b[:d.n]
	var size int64
	for range 2 { // the base's size, then the result's
		size = 0
		for shift := 0; ; shift += 7 {
			if len(b) == 0 || shift > 56 {
				return 0, false
			}
			c := b[0]
			b = b[1:]
			size |= int64(c&0x7f) << shift
			if c&0x80 == 0 {
				break
			}
		}
	}
	return size, size >= 0
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
